"""Model versions: training, evaluation, the MLflow Model Registry, aliases and rollback."""

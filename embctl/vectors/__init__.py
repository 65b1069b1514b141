"""The vector cache: SQLite files of embeddings, one per namespace, under EMBCTL_HOME."""

"""The acid tier through SQLAlchemy 2 Core: PostgreSQL's write path and the SQL shared with
SQLite."""

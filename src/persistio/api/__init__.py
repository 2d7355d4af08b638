"""The public store: Persistio, AsyncPersistio, transactions and status(); each verb
delegates to the role that does the work."""

"""The amorphous tier on Apache Cassandra: documents, counts and their folding, requests in
flight, keyspace health. Importing this package imports no driver."""

"""onnet's server: the Discovery and Registry gRPC services over a registry store."""

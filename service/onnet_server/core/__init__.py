"""Pure domain logic: validation, fingerprints, discovery and registration. No grpc, no redis."""

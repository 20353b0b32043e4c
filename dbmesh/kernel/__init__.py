"""The sharding kernel: parse (with a statement-shape cache), route, rewrite, execute and merge."""

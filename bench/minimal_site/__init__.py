"""A bench-only site for bench/intake.py: the project's settings and URLs plus one minimal
endpoint, so that the intake benchmark can load the same server, database and clients with a
request that only stores the file and a row. Never part of the product's URLs."""

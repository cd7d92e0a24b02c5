"""The JSON Schema of the wire protocol (``spec/schema/``), generated from the protocol
classes.

``python -m trio_pipe.protocol.schema --write spec/schema`` writes it;
``python -m trio_pipe.protocol.schema --check spec/schema`` exits 1, with a diff, if the
committed files differ from what the code generates; with neither option the schema is
printed.
"""

from ._schema import SCHEMA_FILE, check, json_schema, main, schema_files, write

__all__ = ["SCHEMA_FILE", "check", "json_schema", "main", "schema_files", "write"]

if __name__ == "__main__":
    raise SystemExit(main())

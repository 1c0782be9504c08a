"""Looking after the box: the data directory's hub lock, the start-up integrity check, the doctor and the
`backup`/`restore`/`doctor` commands (docs/appliance-care.md)."""

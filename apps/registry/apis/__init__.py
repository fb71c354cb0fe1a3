"""Registry API: models, versions (upload), aliases, grants; one module per resource, and
`base` for the lookups and base view they share. Views are thin: parse, call, render."""

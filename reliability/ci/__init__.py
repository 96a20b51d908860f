"""Asset checks in CI: `reliability check` (checks of a selection, no materialization) and `reliability ci`
(slim CI of a change on a throwaway copy of the warehouse, with its blast radius)."""

"""trio_pipe."""

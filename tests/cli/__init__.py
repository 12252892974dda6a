"""The command line: commands, refusals, set-up."""

"""Archives (一户一档、一组一本、一格一盒) and grid organisation (五个一同步)."""

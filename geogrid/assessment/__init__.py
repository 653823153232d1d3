"""Assessment (量化考核): indicators computed in the database, schemes, rounds and grades."""

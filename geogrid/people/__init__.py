"""People (人): household members and special-population records, kept as personal data.

- :mod:`geogrid.people.idcard` validates ID numbers (GB 11643);
- :mod:`geogrid.people.crypto` holds the key provider, AEAD encryption and keyed hash;
- :mod:`geogrid.people.mask` masks names, phones and ID numbers for display;
- :mod:`geogrid.people.load` imports members and special-population spreadsheets;
- :mod:`geogrid.people.service` reads and writes them, scoped and audited.
"""

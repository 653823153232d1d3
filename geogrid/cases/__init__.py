"""Cases (事件): the six-step workflow under deadlines, routing, duplicates, attachments.

``machine`` holds the state machine as data, ``service`` the scoped, transactional
operations (the only writer of the case tables), ``routing`` the (area, category) → post
table, ``history`` the event histories of imported cases, ``calendar`` the working
calendar deadlines are counted on, ``open311`` the GeoReport v2 mapping.
"""

"""Field work: key units and fire inspections, visit logs, follow-ups, the field app's sync.

``units`` and ``filings`` keep the key-unit register (重点单位户籍化) and its filings on the
working calendar, ``inspections`` the fire-inspection points, schedules, checklists and
records, ``visits`` the visit logs (民情日志), ``coverage`` the visit plan and coverage,
``followups`` the special-population follow-up schedule, ``idempotency``, ``sync`` and
``bundle`` what the offline field app (/field) sends and caches.
"""

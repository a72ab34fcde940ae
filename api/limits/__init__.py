"""Rate limits and fair shares: how much one caller may ask of the service.

- rates.py: moving-window request rates (Redis, or this process's memory);
- client_address.py: who a request comes from, behind trusted proxies;
- admission.py, middleware.py: which rate a request counts against, before its route;
- sync_slots.py: a cap on one principal's sync runs executing at once;
- fair_share.py, dispatcher.py: a cap on one principal's async jobs at the backend,
  the rest waiting in its own queue.
- request_size.py: what one request may carry (its body, each string of its `args`).
"""

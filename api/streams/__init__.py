"""Event streams: clients following jobs' event logs (SSE and WebSocket).

- `watch.py`: the one place in an API process where readers wait for news of a job;
- `sqlite_feed.py`, `redis_feed.py`: one background loop per process that notices new
  events in the log and wakes the readers of those jobs; `record_sweep.py` wakes them
  when a job's record has ended (a record may end without a terminal event);
- `follow.py`: one client's stream: history, then live, then one terminal message;
- `slots.py`: how many streams may be open; `sse.py`: the SSE response;
- `shutdown.py`: streams end on SIGTERM, so the server can stop.
"""

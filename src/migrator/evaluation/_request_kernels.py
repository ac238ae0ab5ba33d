"""Numba kernel of the request-level grader (``requests.py``): one tenant's requests replayed
through its inference instances, event by event.

Arrays and scalars in, arrays out, no Python objects; the decorator is the one of
``migrator.workload._kernels``. Its plain-Python twin (deques, the next event found by sorting
candidates) is ``reference_replay`` in tests/evaluation/test_requests.py, which holds the two
equal on random instance timelines.

The model (docs/goodput.md, "The request-level grader"):

* an instance (a *segment*: one instance serving one task between two decisions) takes
  requests from its ``ready`` time (set-up done) until its ``end`` time;
* an arriving request joins the instance with the fewest requests queued or in service
  (join-shortest-queue; ties go to the instance with the shorter batch-1 service time, then
  to the lower segment index); while no instance is ready it waits at the router, which
  hands its requests out, oldest first, as soon as one is;
* an instance serves its queue first come first served in greedy batches: whenever it is
  free and requests wait, it takes all of them up to its batch cap, and a batch of ``k``
  runs for the model table's service time interpolated at ``k``;
* a request that has waited ``timeout_s`` without starting is dropped when the instance
  would take it (a serving system's queue timeout);
* when an instance ends (removed, or re-assigned to another task), the requests queued on
  it and those of its unfinished batch go back to the router, keeping their arrival
  times, and are routed again at once (to the router's wait when no instance is ready).
"""

from __future__ import annotations

import numpy as np

from ..workload._kernels import _jit, service_time


@_jit
def _start_batch(k, t, arrival_s, timeout_s, nxt, head, tail, qlen, in_service, busy_until,
                 start_s, server, seg_sizes, seg_service, seg_n_sizes, seg_cap):
    """Instance k is free at t: drop the expired requests at its head, start a batch of the
    rest up to its cap."""
    req = head[k]
    while req >= 0 and t - arrival_s[req] > timeout_s:
        req = nxt[req]
        qlen[k] -= 1
    head[k] = req
    if req < 0:
        tail[k] = -1
        return
    count = 0
    while req >= 0 and count < seg_cap[k]:
        start_s[req] = t
        server[req] = k
        count += 1
        req = nxt[req]
    m = seg_n_sizes[k]
    in_service[k] = count
    busy_until[k] = t + service_time(seg_sizes[k, :m], seg_service[k, :m], count)


@_jit
def _route(req, active, n_active, seg_service, nxt, head, tail, qlen, pending):
    """Join-shortest-queue among the active instances; returns the instance, or -1 after
    appending the request to the router's wait (``pending``: head, tail) when none is."""
    nxt[req] = -1
    best = -1
    for a in range(n_active):
        k = active[a]
        if best < 0 or qlen[k] < qlen[best] or (
            qlen[k] == qlen[best]
            and (seg_service[k, 0] < seg_service[best, 0] or (seg_service[k, 0] == seg_service[best, 0] and k < best))
        ):
            best = k
    if best < 0:
        if pending[1] < 0:
            pending[0] = req
        else:
            nxt[pending[1]] = req
        pending[1] = req
        return -1
    if tail[best] < 0:
        head[best] = req
    else:
        nxt[tail[best]] = req
    tail[best] = req
    qlen[best] += 1
    return best


@_jit
def replay_tenant(arrival_s, seg_ready_s, seg_end_s, seg_sizes, seg_service, seg_n_sizes, seg_cap, timeout_s):
    """Replay one tenant's requests through its instances.

    arrival_s: float64 (n,) sorted arrival times. Segments, sorted by ready time:
    seg_ready_s, seg_end_s float64 (s,) with ready < end (end may be inf);
    seg_sizes int64 (s, m) and seg_service float64 (s, m) the profiled batch sizes and their
    service times (s), of which the first seg_n_sizes[k] count; seg_cap int64 (s,) >= 1 the
    largest batch. timeout_s: longest wait before a request's batch starts.

    Returns start_s, done_s (float64 (n,), NaN for a dropped request) and server (int64 (n,),
    the segment that served the request, -1 when dropped).
    """
    n = arrival_s.shape[0]
    n_seg = seg_ready_s.shape[0]
    start_s = np.full(n, np.nan)
    done_s = np.full(n, np.nan)
    server = np.full(n, -1, dtype=np.int64)
    nxt = np.full(n, -1, dtype=np.int64)
    head = np.full(n_seg, -1, dtype=np.int64)
    tail = np.full(n_seg, -1, dtype=np.int64)
    qlen = np.zeros(n_seg, dtype=np.int64)
    in_service = np.zeros(n_seg, dtype=np.int64)
    busy_until = np.full(n_seg, np.inf)
    active = np.empty(n_seg, dtype=np.int64)
    pending = np.full(2, -1, dtype=np.int64)  # the router's wait: head, tail
    n_active = 0
    next_seg = 0
    r = 0
    while True:
        # The next event; on a tie a batch ends first, then instances get ready, then end,
        # then a request arrives.
        t_free = t_end = np.inf
        a_free = a_end = -1
        for a in range(n_active):
            k = active[a]
            if busy_until[k] < t_free:
                t_free, a_free = busy_until[k], a
            if seg_end_s[k] < t_end:
                t_end, a_end = seg_end_s[k], a
        t_ready = seg_ready_s[next_seg] if next_seg < n_seg else np.inf
        t_arrival = arrival_s[r] if r < n else np.inf
        if t_free < np.inf and t_free <= min(t_ready, t_end, t_arrival):
            t, k = t_free, active[a_free]
            for _ in range(in_service[k]):
                req = head[k]
                done_s[req] = t
                head[k] = nxt[req]
                qlen[k] -= 1
            if head[k] < 0:
                tail[k] = -1
            in_service[k] = 0
            busy_until[k] = np.inf
            _start_batch(k, t, arrival_s, timeout_s, nxt, head, tail, qlen, in_service, busy_until,
                         start_s, server, seg_sizes, seg_service, seg_n_sizes, seg_cap)
            continue
        if t_ready < np.inf and t_ready <= min(t_end, t_arrival):
            t = t_ready
            while next_seg < n_seg and seg_ready_s[next_seg] <= t:
                active[n_active] = next_seg
                n_active += 1
                next_seg += 1
            back = pending[0]  # the router's wait goes out
            pending[0] = -1
            pending[1] = -1
        elif t_end < np.inf and t_end <= t_arrival:
            t, k = t_end, active[a_end]
            n_active -= 1
            active[a_end] = active[n_active]
            back = head[k]  # its queue and unfinished batch go back to the router
            head[k] = -1
            tail[k] = -1
            qlen[k] = 0
            in_service[k] = 0
            busy_until[k] = np.inf
        elif t_arrival < np.inf:
            k = _route(r, active, n_active, seg_service, nxt, head, tail, qlen, pending)
            if k >= 0 and in_service[k] == 0:
                _start_batch(k, t_arrival, arrival_s, timeout_s, nxt, head, tail, qlen, in_service, busy_until,
                             start_s, server, seg_sizes, seg_service, seg_n_sizes, seg_cap)
            r += 1
            continue
        else:
            break
        # After an instance got ready or ended: route the requests sent back, start the idle.
        while back >= 0:
            following = nxt[back]
            start_s[back] = np.nan
            server[back] = -1
            _route(back, active, n_active, seg_service, nxt, head, tail, qlen, pending)
            back = following
        for a in range(n_active):
            k = active[a]
            if in_service[k] == 0 and head[k] >= 0:
                _start_batch(k, t, arrival_s, timeout_s, nxt, head, tail, qlen, in_service, busy_until,
                             start_s, server, seg_sizes, seg_service, seg_n_sizes, seg_cap)
    return start_s, done_s, server

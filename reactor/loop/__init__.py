"""The loop layer: selectors event loop, timers, wake-up socketpair, thread-pool hand-off."""

from reactor.loop.eventloop import EventLoop
from reactor.loop.offload import PoolClosed, PoolJob, ThreadPool
from reactor.loop.timers import TimerHandle

__all__ = ["EventLoop", "PoolClosed", "PoolJob", "ThreadPool", "TimerHandle"]

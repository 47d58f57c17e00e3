"""Figure functions that fail, for tests of common.reporting.plots.draw_in_child: a
module of their own, so that the child process that unpickles them imports
nothing heavy."""
import os
import signal


def segfault(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGSEGV)


def raise_error(*args, **kwargs):
    raise ValueError("no figure today")

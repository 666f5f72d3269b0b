# Recursive Fibonacci: function calls and small-int arithmetic, the interpreter's call path.
# In the layout of MicroPython's tests/perf_bench: ``bm_params`` maps (CPU MHz, heap KiB) to
# the arguments for a board of that class, and ``bm_setup(params)`` returns the function to
# time and a function giving (a normalising count, the result).


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


bm_params = {
    (16, 2): (12,),
    (100, 8): (16,),
    (1000, 64): (21,),
}


def bm_setup(params):
    (n,) = params
    state = {}

    def run():
        state["fib"] = fib(n)

    def result():
        return n, state["fib"]

    return run, result

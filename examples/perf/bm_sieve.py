# Sieve of Eratosthenes in a bytearray: indexing, slicing-free loops and a buffer as big as
# the board's heap allows (the heap KiB in the params key).


def count_primes(limit):
    composite = bytearray(limit + 1)
    i = 2
    while i * i <= limit:
        if not composite[i]:
            for j in range(i * i, limit + 1, i):
                composite[j] = 1
        i += 1
    return limit - 1 - sum(composite)


bm_params = {
    (16, 2): (500,),
    (100, 8): (3000,),
    (1000, 64): (40000,),
}


def bm_setup(params):
    (limit,) = params
    state = {}

    def run():
        state["primes"] = count_primes(limit)

    def result():
        return limit, state["primes"]

    return run, result

# CRC-16/CCITT-FALSE, bit by bit: the checksum loop of a serial-protocol driver, shifts and
# masks on every bit of a frame.


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return crc


bm_params = {
    (16, 2): (32,),
    (100, 8): (256,),
    (1000, 32): (2048,),
}


def bm_setup(params):
    (n,) = params
    frame = bytes([(i * 7 + 3) & 0xFF for i in range(n)])
    state = {}

    def run():
        state["crc"] = crc16(frame)

    def result():
        return n, state["crc"]

    return run, result

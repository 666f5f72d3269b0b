# An output test (MicroPython's tests/ form): the script runs on the board and its output
# must equal nmea_parse.py.exp. A GPS NMEA sentence parser with its checksum.

# str.partition: left out of the smallest builds (a micro:bit's 1.9.2), so skipped there
requires_feature = ("full_str",)


def checksum_ok(sentence):
    body, _, given = sentence[1:].partition("*")
    total = 0
    for ch in body:
        total ^= ord(ch)
    return ("0" + hex(total)[2:])[-2:].upper() == given


def parse_gga(sentence):
    fields = sentence.split("*")[0].split(",")
    lat = float(fields[2][:2]) + float(fields[2][2:]) / 60
    if fields[3] == "S":
        lat = -lat
    lon = float(fields[4][:3]) + float(fields[4][3:]) / 60
    if fields[5] == "W":
        lon = -lon
    return {"lat": round(lat, 4), "lon": round(lon, 4), "sats": int(fields[7])}


GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
print(checksum_ok(GGA))
print(checksum_ok(GGA.replace("08", "09")))
fix = parse_gga(GGA)
print(fix["lat"], fix["lon"], fix["sats"])

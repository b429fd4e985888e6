"""Generate a seeded, realistic sample of phone coverage logs (mobile_logs.csv) for the Signal Stream pipeline."""

import argparse
import csv
import datetime
import math
import random
from dataclasses import dataclass
from pathlib import Path

HEADER = ["hour", "lat", "long", "signal", "network", "operator", "status", "description",
          "speed", "satellites", "precission", "provider", "activity", "postal_code"]
FIXED_DATE = datetime.date(2026, 3, 14)

# (name, centre lat, centre long, first postal code, last postal code, weight)
CITIES = [
    ("Madrid", 40.4168, -3.7038, 28001, 28055, 0.40),
    ("Barcelona", 41.3874, 2.1686, 8001, 8042, 0.30),
    ("Valencia", 39.4699, -0.3763, 46001, 46026, 0.17),
    ("Sevilla", 37.3891, -5.9845, 41001, 41020, 0.13),
]
# Spelling variants as different handsets/SIMs report them, with their odds.
SPELLINGS: dict[str, list[tuple[str, float]]] = {
    "Movistar": [("Movistar", 0.55), ("movistar", 0.25), ("MOVISTAR", 0.20)],
    "Vodafone": [("Vodafone", 0.65), ("vodafone", 0.35)],
    "Orange": [("Orange", 0.70), ("orange", 0.30)],
    "Yoigo": [("Yoigo", 0.60), ("YOIGO", 0.40)],
    "Simyo": [("Simyo", 1.0)],
    "MasMovil": [("MasMovil", 1.0)],
}
# brand -> (phones in the fleet, host network brand, typical ASU level)
BRANDS = {
    "Movistar": (12, "Movistar", 19), "Vodafone": (9, "Vodafone", 18),
    "Orange": (7, "Orange", 17), "Yoigo": (4, "Yoigo", 15),
    "Simyo": (3, "Orange", 16), "MasMovil": (2, "Yoigo", 14),
}
ROAMERS = ["T-Mobile", "Vodafone DE", "O2 - UK"]
STATUSES = [(0, "STATE_IN_SERVICE", 0.925), (1, "STATE_OUT_OF_SERVICE", 0.035),
            (2, "STATE_EMERGENCY_ONLY", 0.028), (3, "STATE_POWER_OFF", 0.012)]
# activity -> (weight, min speed m/s, max speed m/s)
ACTIVITIES = {"STILL": (0.45, 0.0, 0.0), "ON_FOOT": (0.20, 0.6, 2.0), "IN_VEHICLE": (0.18, 4.0, 30.0),
              "ON_BICYCLE": (0.05, 3.0, 8.0), "UNKNOWN": (0.08, 0.0, 3.0), "TILTING": (0.04, 0.0, 0.4)}
# Relative traffic per hour of day: quiet nights, busy daytime.
HOUR_WEIGHTS = [1, 1, 0.6, 0.5, 0.5, 0.8, 2, 4, 7, 8, 8, 8, 9, 9, 8, 8, 8, 9, 9, 8, 7, 5, 3, 2]
JUNK = ["n/a", "-", "?", "err"]
METRES_PER_DEG = 111_320.0


@dataclass
class Phone:
    city: int
    brand: str  # key of SPELLINGS, or a roaming operator name
    host: str  # key of SPELLINGS for the network actually used
    operator: str
    network: str
    base_signal: int
    lat: float
    lon: float
    postal_code: int
    activity: str
    last_seen: int = 0


def pick(rng: random.Random, weighted: list[tuple[str, float]]) -> str:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def spell(rng: random.Random, brand: str, host: str) -> tuple[str, str]:
    operator = pick(rng, SPELLINGS[brand]) if brand in SPELLINGS else brand
    return operator, operator if host == brand else pick(rng, SPELLINGS[host])


def make_phone(rng: random.Random, brand: str) -> Phone:
    roaming = brand in ROAMERS
    city = rng.choices(range(len(CITIES)), weights=[0.5, 0.5, 0, 0] if roaming else [c[5] for c in CITIES])[0]
    _, clat, clon, first_cp, last_cp, _ = CITIES[city]
    if roaming:
        host, base = rng.choice(["Movistar", "Vodafone", "Orange"]), 13
    else:
        _, host, base = BRANDS[brand]
    operator, network = spell(rng, brand, host)
    lat = clat + rng.gauss(0, 0.03)
    lon = clon + rng.gauss(0, 0.03 / math.cos(math.radians(clat)))
    return Phone(city, brand, host, operator, network, base, lat, lon, rng.randint(first_cp, last_cp),
                 pick(rng, [(a, v[0]) for a, v in ACTIVITIES.items()]))


def move(rng: random.Random, phone: Phone, speed: float, dt: int) -> None:
    _, clat, clon, first_cp, last_cp, _ = CITIES[phone.city]
    # Phones log intermittently, so only part of the gap is spent travelling.
    dist = speed * min(dt, 900) * rng.uniform(0.2, 1.0)
    heading = rng.uniform(0, 2 * math.pi)
    if math.hypot(phone.lat - clat, phone.lon - clon) > 0.12:  # stay within the metro area
        heading = math.atan2(clat - phone.lat, clon - phone.lon)
    phone.lat += dist * math.sin(heading) / METRES_PER_DEG
    phone.lon += dist * math.cos(heading) / (METRES_PER_DEG * math.cos(math.radians(phone.lat)))
    if dist > 500 and rng.random() < 0.3:
        phone.postal_code = rng.randint(first_cp, last_cp)


def make_row(rng: random.Random, phone: Phone, second: int) -> list[str]:
    if rng.random() > 0.8:
        phone.activity = pick(rng, [(a, v[0]) for a, v in ACTIVITIES.items()])
    _, lo, hi = ACTIVITIES[phone.activity]
    speed = round(rng.uniform(lo, hi), 2) if hi else 0.0
    move(rng, phone, speed, second - phone.last_seen)
    phone.last_seen = second

    status, description, _ = rng.choices(STATUSES, weights=[s[2] for s in STATUSES])[0]
    if status == 0:
        signal = min(31, max(1, round(rng.gauss(phone.base_signal, 5))))
    elif status == 2:
        signal = rng.randint(0, 5)
    else:
        signal = 0 if rng.random() < 0.85 else rng.randint(1, 3)

    provider = pick(rng, [("gps", 0.5), ("fused", 0.3), ("network", 0.2)])
    if provider == "network":
        satellites, precision = "", round(rng.uniform(150, 2000), 1)
    else:
        satellites = f"{float(rng.randint(4, 14))}"
        precision = round(rng.uniform(3, 25) if provider == "gps" else rng.uniform(5, 60), 1)
        if provider == "gps" and rng.random() < 0.04:
            provider = "GPS"
    # Reported position wobbles with the fix accuracy around the true one.
    jitter = min(precision, 300) / METRES_PER_DEG
    lat, lon = phone.lat + rng.gauss(0, jitter / 2), phone.lon + rng.gauss(0, jitter / 2)

    clock = datetime.time(second // 3600, second // 60 % 60, second % 60)
    hour = clock.strftime("%H:%M:%S")
    if rng.random() < 0.02:
        hour = datetime.datetime.combine(FIXED_DATE, clock).strftime("%Y-%m-%d %H:%M:%S")

    operator, network = phone.operator, phone.network
    # Each handset has its usual spelling, but other apps/APIs on it sometimes report another.
    if rng.random() < 0.1:
        operator, network = spell(rng, phone.brand, phone.host)
    if rng.random() < 0.03:
        operator = f" {operator} "
    if rng.random() < 0.01:
        operator = ""
    if rng.random() < 0.01:
        network = ""
    postal = "" if rng.random() < 0.2 else f"{float(phone.postal_code)}"

    row = [hour, f"{lat:.6f}", f"{lon:.6f}", str(signal), network, operator, str(status), description,
           str(speed), satellites, str(precision), provider, phone.activity, postal]
    if rng.random() < 0.003:
        row[rng.choice([3, 8, 9, 10])] = rng.choice(JUNK)
    return row


def generate(rows: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    fleet = [brand for brand, (count, _, _) in BRANDS.items() for _ in range(count)] + ROAMERS
    phones = [make_phone(rng, brand) for brand in fleet]
    hours = rng.choices(range(24), weights=HOUR_WEIGHTS, k=rows)
    seconds = sorted(h * 3600 + rng.randrange(3600) for h in hours)
    # Tourists log far less than the fleet's own phones.
    phone_weights = [0.3 if phone.brand in ROAMERS else 1.0 for phone in phones]
    for phone in phones:
        phone.last_seen = seconds[0] if seconds else 0
    return [make_row(rng, rng.choices(phones, weights=phone_weights)[0], s) for s in seconds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "mobile_logs.csv")
    args = parser.parse_args()
    with open(args.out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(generate(args.rows, args.seed))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The approach drawdrop replaces, kept as the benchmark's baseline: a one-off script that reads
each PNG, base64-encodes it, POSTs it to the img2img API with `requests`, and writes the answer.

    python3 benches/baseline.py --url http://127.0.0.1:7860 --inbox IN --outbox OUT

(No settling, no claims, no retries, no durability: just the requests.)
"""
import argparse
import base64
import os
import struct
import sys

import requests


def png_size(data):
    # IHDR: width and height are the first 8 bytes of its data, at offset 16.
    return struct.unpack(">II", data[16:24])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--inbox", required=True)
    parser.add_argument("--outbox", required=True)
    args = parser.parse_args()
    os.makedirs(args.outbox, exist_ok=True)
    names = sorted(n for n in os.listdir(args.inbox) if n.lower().endswith(".png"))
    for name in names:
        with open(os.path.join(args.inbox, name), "rb") as f:
            data = f.read()
        width, height = png_size(data)
        payload = {
            "init_images": [base64.b64encode(data).decode("ascii")],
            "width": width,
            "height": height,
            "seed": -1,
        }
        answer = requests.post(args.url + "/sdapi/v1/img2img", json=payload, timeout=600)
        answer.raise_for_status()
        image = base64.b64decode(answer.json()["images"][0])
        with open(os.path.join(args.outbox, name), "wb") as f:
            f.write(image)
    print(len(names), file=sys.stderr)


if __name__ == "__main__":
    main()

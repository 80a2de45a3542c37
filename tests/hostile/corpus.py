"""Appended-destination and landing-host tricks: the open-redirect corpus of the hostile suite.

Each entry tries to make the edge send a browser somewhere other than a signed host
(`shop.example` and its subdomains), or to sign a landing that reads one way to a checker and
another to a browser. Grouped by trick so a failure names its family.
"""

from __future__ import annotations

EVIL = "evil.example"
SIGNED = "shop.example"

SCHEME_RELATIVE = [
    f"//{EVIL}",
    f"///{EVIL}",
    f"////{EVIL}/",
    f"/\\{EVIL}",
    f"\\\\{EVIL}",
    f"\\/{EVIL}",
    f"/%2f{EVIL}",
    f"/%5c{EVIL}",
    f"https:{EVIL}",
    f"https:/{EVIL}",
    f"https:\\\\{EVIL}",
    f"https:/\\{EVIL}",
    f"HTTPS://{EVIL}",
    f"http://{EVIL}",
    f"https://{EVIL}/",
    f" https://{EVIL}",
    f"https://{EVIL}//{SIGNED}/",
]
SCHEMES = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "jav\tascript:alert(1)",
    f"javascript://{SIGNED}/%0aalert(1)",
    "data:text/html;base64,PHNjcmlwdD4=",
    "vbscript:msgbox(1)",
    f"file://{SIGNED}/etc/passwd",
    f"ftp://{SIGNED}/",
    f"blob:https://{SIGNED}/x",
    f"https+evil://{SIGNED}/",
]
USERINFO = [
    f"https://{SIGNED}@{EVIL}/",
    f"https://{SIGNED}:443@{EVIL}/",
    f"https://{SIGNED}:pw@{EVIL}",
    f"https://{SIGNED}%40{EVIL}/",
    f"https://{SIGNED}%2540{EVIL}/",
    f"https://{EVIL}\\@{SIGNED}/",
    f"https://{EVIL}#@{SIGNED}/",
    f"https://{EVIL}?@{SIGNED}/",
    f"https://{EVIL};@{SIGNED}/",
    f"https://{SIGNED}&@{EVIL}/",
    f"https://@{EVIL}/",
    f"https://{SIGNED}@@{EVIL}/",
    f"https://u@{SIGNED}/",
]
ENCODED = [
    f"https://{EVIL}%2f.{SIGNED}/",
    f"https://{EVIL}%2F@{SIGNED}/",
    f"https://{EVIL}%252f.{SIGNED}/",
    f"https://{EVIL}%5c.{SIGNED}/",
    f"https://{EVIL}%23.{SIGNED}/",
    f"https://{EVIL}%3f.{SIGNED}/",
    f"https://{EVIL}%00.{SIGNED}/",
    f"https://{EVIL}%20.{SIGNED}/",
    "https://evil%2eexample/",
    f"https://{SIGNED}%2e{EVIL}/",
    f"https://{SIGNED}%2f%2f@{EVIL}/",
    f"https://{EVIL}%E3%80%82{SIGNED}/",
    f"https://{EVIL}/%2e%2e/{SIGNED}/",
    f"https://{SIGNED}%0d%0aLocation:%20https://{EVIL}/",
    f"https://{EVIL}&.{SIGNED}/",
    f"https://{EVIL}|.{SIGNED}/",
    f"https://{EVIL}<.{SIGNED}/",
    f"https://{EVIL}^.{SIGNED}/",
    f"https://{EVIL}*.{SIGNED}/",
]
IDN = [
    "https://\u0455hop.example/",  # Cyrillic dze
    "https://sh\u043ep.example/",  # Cyrillic o
    "https://shop.exampl\u0435/",  # Cyrillic ie
    "https://xn--hop-ehd.example/",
    "https://xn--shp-example-9db.example/",
    f"https://{SIGNED}.xn--80ak6aa92e/",
    f"https://{SIGNED}\uff0e{EVIL}/",  # fullwidth full stop: a dot to IDNA
    f"https://{SIGNED}\u3002{EVIL}/",  # ideographic full stop
    f"https://{EVIL}\u2215{SIGNED}/",  # division slash
    f"https://{EVIL}\uff0f{SIGNED}/",  # fullwidth solidus
    f"https://{EVIL}\u2044{SIGNED}/",  # fraction slash
    "https://\uff53\uff48\uff4f\uff50.example/",  # fullwidth: a browser goes to shop.example
    f"https://{SIGNED}\u00ad/",  # soft hyphen, removed by IDNA
    f"https://{EVIL}\u200b.{SIGNED}/",
]
TRAILING_DOTS = [
    f"https://{SIGNED}./",
    f"https://{SIGNED}../",
    f"https://{EVIL}./.{SIGNED}",
    f"https://{SIGNED}.{EVIL}./",
    f"https://.{SIGNED}/",
    f"https://{EVIL}.\\.{SIGNED}/",
]
PORTS = [
    f"https://{SIGNED}:443@{EVIL}/",
    f"https://{EVIL}:443/",
    f"https://{SIGNED}:99999/",
    f"https://{SIGNED}:0/",
    f"https://{SIGNED}:-1/",
    f"https://{SIGNED}:80:80/",
    f"https://{SIGNED}:443\\@{EVIL}/",
    f"https://{SIGNED}:%34%34%33/",
    f"https://{SIGNED}:443:{EVIL}/",
    f"https://{SIGNED}:8443/deep",
]
CONTROL_AND_BIDI = [
    f"https://{EVIL}\u202e.{SIGNED}/",
    f"https://{SIGNED}/\u202egnp.exe",
    f"https://{SIGNED}\u0085{EVIL}/",
    f"https://{SIGNED}/\u0085",
    f"https://{SIGNED}/\u2028.{EVIL}",
    f"https://{SIGNED}/\u2029",
    f"https://{EVIL}\x00.{SIGNED}/",
    f"https://{EVIL}\r\n.{SIGNED}/",
    f"https://{SIGNED}/\r\nLocation: https://{EVIL}/",
    f"https://{EVIL}/\r\nLocation: https://{EVIL}/",
    f"https://{SIGNED}/\x00",
    f"https://{EVIL}\t.{SIGNED}/",
    f"\thttps://{EVIL}/",
    f"https://{SIGNED}\ufeff/",
    f"https://{SIGNED}/\u200e\u2066x",
    f"https://{SIGNED}/\x7f",
    f"https://{SIGNED}/\x1b[31m",
]
OTHER = [
    f"https://{SIGNED}.{EVIL}/",
    f"https://evil{SIGNED}/",
    f"https://{SIGNED}\\{EVIL}",
    f"https://{EVIL}\\.{SIGNED}/",
    f"https://{EVIL}#{SIGNED}",
    f"https://{EVIL}?{SIGNED}",
    "https://[::1]/",
    "https://127.0.0.1/",
    "https://2130706433/",
    "https://0x7f.1/",
    "https://0177.0.0.1/",
    "https://[::ffff:127.0.0.1]/",
    "https://" + "a" * 5000 + ".example/",
    f"https://{SIGNED}/" + "p" * 3000,
    "",
    "https://",
    "https:///",
    f"{SIGNED}/x",
]
TRICKS: dict[str, list[str]] = {
    "scheme-relative": SCHEME_RELATIVE,
    "schemes": SCHEMES,
    "userinfo": USERINFO,
    "encoded dots and slashes": ENCODED,
    "IDN homographs": IDN,
    "trailing dots": TRAILING_DOTS,
    "ports": PORTS,
    "control and bidi": CONTROL_AND_BIDI,
    "other": OTHER,
}
CORPUS = [trick for tricks in TRICKS.values() for trick in tricks]

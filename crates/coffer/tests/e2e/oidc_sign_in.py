"""Signs in to Coffer through the OpenID provider the way a browser does (requests, no script).

usage: oidc_sign_in.py BASE USER                  -> prints the JSON of /api/v1/me after sign-in
       oidc_sign_in.py BASE USER --forge-nonce DB -> changes the nonce Coffer stored before the
                                                     provider answers; prints Coffer's answer
"""
import re, sqlite3, sys, urllib.parse
import requests

base, user = sys.argv[1], sys.argv[2]
forge_db = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--forge-nonce" else None
s = requests.Session()
r = s.get(f"{base}/login/oidc", allow_redirects=False)
assert r.status_code == 303, (r.status_code, r.text)
authorize = r.headers["Location"]
state = urllib.parse.parse_qs(urllib.parse.urlparse(authorize).query)["state"][0]
if forge_db:
    db = sqlite3.connect(forge_db, timeout=10)
    db.execute("UPDATE login_requests SET nonce = 'forged' WHERE state = ?", (state,))
    db.commit()
    db.close()

def form_action(html, url):
    m = re.search(r'<form[^>]*action="([^"]+)"', html)
    assert m, html[:500]
    return urllib.parse.urljoin(url, m.group(1))

r = s.get(authorize)
r = s.post(form_action(r.text, r.url), data={"prompt": "login", "login": user, "password": "anything"})
if "consent" in r.text.lower() and "<form" in r.text:
    r = s.post(form_action(r.text, r.url), data={"prompt": "consent"}, allow_redirects=False)
# Follow the provider's redirects up to Coffer's callback, then let Coffer answer.
while r.status_code in (302, 303) and not r.headers["Location"].startswith(base):
    r = s.get(urllib.parse.urljoin(r.url, r.headers["Location"]), allow_redirects=False)
if r.status_code in (302, 303):
    r = s.get(r.headers["Location"], allow_redirects=False)
if forge_db:
    print(r.status_code, r.text)
    sys.exit(0)
assert r.status_code == 303 and r.headers["Location"] == "/search", (r.status_code, r.text[:800])
print(s.get(f"{base}/api/v1/me").text)

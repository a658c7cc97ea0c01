"""The continuity statement (HTML and PDF) and VERIFY.txt: what people read.

Both are rendered from the plan alone (no clock), so they are reproducible too; the PDF
uses reportlab's `invariant` mode, which fixes the document id and creation date.
"""

from __future__ import annotations

import html
import io
from typing import Any

from evidence.bundles.manifest import ACCESS_TYPES, TSA_CA, Plan


def _who(entry: dict[str, Any]) -> str:
    return str(entry.get("actor", ""))


def _what(entry: dict[str, Any]) -> str:
    """One line a reader understands: the type plus the facts that matter for it."""
    t = entry["type"]
    bits = [t]
    for k in ("reason", "exhibit_ref", "previous_ref", "kind", "recipient", "role", "sha256"):
        if entry.get(k):
            bits.append(f"{k}={entry[k]}")
    return " ".join(bits)


def _file_or_disposal(ex: dict[str, Any]) -> str:
    """The exhibit's file in the bundle, or why there is none."""
    d = ex.get("disposed")
    if not d:
        return str(ex["file"])
    return (f"no media: disposed of on {d['at']} under the retention policy ({d['rule']}; "
            f"approved by {d['approved_by']}; ledger entry {d['ledger_index']})")


def officer_text(officer: dict[str, Any]) -> str:
    """'officer 4711 (pc_smith)', or that no officer is attributed: never a bare None."""
    if not officer.get("id"):
        return "no officer attributed"
    name = f" ({officer['username']})" if officer.get("username") else ""
    return f"officer {officer['id']}{name}"


def camera_text(camera: dict[str, Any]) -> str:
    return f"camera {camera['serial']}" if camera.get("serial") else "camera not identified"


def how_text(part: dict[str, Any]) -> str:
    return str(part.get("how") or "not recorded (docked before the camera register existed)")


def recorded_text(ex: dict[str, Any]) -> str:
    if ex.get("recorded_at"):
        return f"recorded {ex['recorded_at']}"
    return f"no recording time in the clip; docked {ex['ingested_at']}"


def attribution_lines(ex: dict[str, Any]) -> list[str]:
    """Plain sentences: who recorded the exhibit on which camera, how each was established,
    and every earlier attribution an evidence officer corrected (with their reason)."""
    officer = ex.get("officer") or {"id": ex.get("officer_id")}
    camera = ex.get("camera") or {"serial": ex.get("camera_serial")}
    lines = [f"Recorded by {officer_text(officer)}: established by {how_text(officer)}.",
             f"On {camera_text(camera)}: established by {how_text(camera)}."]
    history = ex.get("attribution_history") or []
    for before, after in zip(history, history[1:]):
        lines.append(
            f"Re-attributed at {after['at']} by {after['actor']} (ledger entry {after['ledger_index']}), "
            f"reason: \"{after['reason']}\"; before: {officer_text(before['officer'])}, "
            f"{camera_text(before['camera'])} (ledger entry {before['ledger_index']}).")
    return lines


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def statement_rows(plan: Plan) -> list[dict[str, Any]]:
    """Per exhibit: facts, custody events, accesses, derivatives (the statement's content)."""
    rows = []
    for ex in plan.manifest["exhibits"]:
        events = [(i, plan.entries[i]) for i in ex["ledger_entries"]]
        rows.append({
            "exhibit": ex,
            "custody": [(i, e) for i, e in events if e["type"] not in ACCESS_TYPES],
            "accesses": [(i, e) for i, e in events if e["type"] in ACCESS_TYPES],
        })
    return rows


def render_html(plan: Plan) -> bytes:
    m, esc = plan.manifest, html.escape
    case, led = m["case"], m["ledger"]
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Continuity statement: {esc(case['reference'])}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse;width:100%}td,th{border:1px solid #999;padding:.3em;"
        "font-size:.9em;vertical-align:top;text-align:left}code{word-break:break-all}</style>",
        "</head><body>",
        "<h1>Exhibit list and continuity statement</h1>",
        f"<p>Case <b>{esc(case['reference'])}</b>: {esc(case['title'])} (id <code>{esc(case['id'])}</code>)</p>",
        f"<p>Every fact below is taken from the evidence store's append-only ledger "
        f"<code>{esc(led['origin'])}</code> as at its signed checkpoint of {led['tree_size']} "
        f"entries (root <code>{esc(led['root_hash'])}</code>), which is included in this bundle "
        f"with an inclusion proof for each entry cited. See VERIFY.txt.</p>",
        "<h2>Exhibit list</h2><table><tr><th>Exhibit</th><th>File</th><th>Recorded by / when</th>"
        "<th>Docked by device / ingested</th><th>SHA-256, size</th></tr>",
    ]
    for ex in m["exhibits"]:
        out.append(
            f"<tr><td>{esc(ex['exhibit_ref'])}</td><td>{esc(_file_or_disposal(ex))}<br>"
            f"(docked as {esc(str(ex['original_filename']))})</td>"
            f"<td>{esc(officer_text(ex.get('officer') or {'id': ex['officer_id']}))}, "
            f"{esc(camera_text(ex.get('camera') or {'serial': ex['camera_serial']}))}<br>"
            f"{esc(recorded_text(ex))}</td>"
            f"<td>{esc(str(ex['device']['name']))}<br>{esc(ex['ingested_at'])}</td>"
            f"<td><code>{esc(ex['sha256'])}</code><br>{ex['size']} bytes</td></tr>")
    out.append("</table>")
    for row in statement_rows(plan):
        ex = row["exhibit"]
        out.append(f"<h2>Exhibit {esc(ex['exhibit_ref'])}: continuity</h2>")
        out.append("<h3>Who recorded it, on which camera</h3>")
        out.extend(f"<p class='attribution'>{esc(line)}</p>" for line in attribution_lines(ex))
        out.append(_events_table("Custody (ledger entries)", row["custody"]))
        out.append(_events_table("Every access (views, downloads)", row["accesses"])
                   if row["accesses"] else "<p>No one viewed or downloaded this exhibit.</p>")
        out.append("<h3>Derived files and how they were made</h3>")
        if not ex["derivatives"]:
            out.append("<p>None.</p>")
        for d in ex["derivatives"]:
            recipe = d.get("recipe") or {}
            out.append(
                f"<p><b>{esc(d['kind'])}</b> ({esc(d['file'] or 'not included in this bundle')}), "
                f"SHA-256 <code>{esc(d['sha256'])}</code>, {d['size']} bytes, made {esc(d['created_at'])} "
                f"from <code>{esc(str(recipe.get('input_sha256', ex['sha256'])))}</code> by ffmpeg "
                f"{esc(str(recipe.get('ffmpeg_version', '?')))} with arguments "
                f"<code>{esc(' '.join(map(str, recipe.get('args', []))))}</code> "
                f"(ledger entry {d['ledger_index']}).</p>")
    out.append("</body></html>\n")
    return "\n".join(out).encode()


def _events_table(title: str, events: list[tuple[int, dict[str, Any]]]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{i}</td><td>{esc(e['at'])}</td><td>{esc(_who(e))}</td><td>{esc(_what(e))}</td></tr>"
        for i, e in events)
    return (f"<h3>{esc(title)}</h3><table><tr><th>Ledger entry</th><th>When (UTC)</th>"
            f"<th>Who</th><th>What</th></tr>{rows}</table>")


def render_pdf(plan: Plan) -> bytes:
    """The same statement as a PDF, reproducibly (reportlab invariant mode)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    styles = getSampleStyleSheet()
    esc = html.escape
    m = plan.manifest
    story: list[Any] = [
        Paragraph("Exhibit list and continuity statement", styles["Title"]),
        Paragraph(f"Case {esc(m['case']['reference'])}: {esc(m['case']['title'])}", styles["Heading2"]),
        Paragraph(f"From ledger {esc(m['ledger']['origin'])} at its signed checkpoint of "
                  f"{m['ledger']['tree_size']} entries, root {esc(m['ledger']['root_hash'])}. "
                  "See VERIFY.txt to check every statement below.", styles["Normal"]),
    ]
    for row in statement_rows(plan):
        ex = row["exhibit"]
        story += [
            Spacer(1, 10),
            Paragraph(f"Exhibit {esc(ex['exhibit_ref'])}: {esc(_file_or_disposal(ex))}", styles["Heading2"]),
            *[Paragraph(esc(line), styles["Normal"]) for line in attribution_lines(ex)],
            Paragraph(f"{esc(_sentence(recorded_text(ex)))}; docked by device "
                      f"{esc(str(ex['device']['name']))}; ingested {esc(ex['ingested_at'])}.",
                      styles["Normal"]),
            Paragraph(f"SHA-256 {esc(ex['sha256'])}, {ex['size']} bytes.", styles["Normal"]),
            Paragraph("Custody and access (ledger entry, time, who, what):", styles["Heading3"]),
        ]
        for i, e in row["custody"] + row["accesses"]:
            story.append(Paragraph(f"{i} &nbsp; {esc(e['at'])} &nbsp; {esc(_who(e))} &nbsp; "
                                   f"{esc(_what(e))}", styles["Code"]))
        for d in ex["derivatives"]:
            recipe = d.get("recipe") or {}
            story.append(Paragraph(
                f"Derived {esc(d['kind'])}: SHA-256 {esc(d['sha256'])}, {d['size']} bytes, by ffmpeg "
                f"{esc(str(recipe.get('ffmpeg_version', '?')))} args "
                f"{esc(' '.join(map(str, recipe.get('args', []))))}", styles["Normal"]))
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, invariant=1, title="Continuity statement",
                            author="evidence store", creator="evidence store",
                            producer="evidence store")
    doc.build(story)
    return buf.getvalue()


def render_verify_txt(plan: Plan, has_token: bool, has_tsa_ca: bool = False) -> bytes:
    """Every step with standard tools (coreutils, xxd, openssl 3, python3), each command on
    its own line after "$ " so it can be copied (and run by the tests exactly as written)."""
    led = plan.manifest["ledger"]
    token, tsa_opt = _token_steps(has_token, has_tsa_ca)
    return f"""HOW TO CHECK THIS BUNDLE (with standard tools; no access to the evidence store needed)

Unzip it, then run each command after "$ " in the unzipped directory (a Unix shell with
coreutils, xxd, OpenSSL 3 and Python 3). Steps 3 and 4 write a few small working files
(ledger-key.*, checkpoint.body, checkpoint.sig) beside the bundle's own; they are not part of it.

1. Every file is as it was when the bundle was made:

   $ sha256sum -c SHA256SUMS

   (SHA256SUMS lists every file except itself; a file not listed there is not part of the bundle.)

2. manifest.json (exhibits, their hashes and provenance) was signed by the force:

   $ openssl pkeyutl -verify -pubin -inkey signing-key.pem -rawin -in manifest.json -sigfile manifest.json.sig

   The signature only proves who signed if signing-key.pem is one of the force's published
   bundle keys (anyone can sign with a key of their own). Its fingerprint (key id):

   $ openssl pkey -pubin -in signing-key.pem -outform DER | sha256sum

   must equal the key_id of a key the force publishes (GET /api/v1/bundles/keys on the force's
   evidence store, or the copy the force gave the court), and that key's validity period
   (valid_from to valid_until) must cover the time the bundle was made.

3. The ledger checkpoint was signed by the force's ledger key. ledger/key.txt is the log's
   verifier key, name+keyid+base64(0x01 || 32-byte Ed25519 public key): compare it with the key
   the force publishes (GET /api/v1/ledger/key). Turn it into a PEM public key: the fixed DER
   prefix of an Ed25519 public key (302a300506032b6570032100), then the 32 key bytes that
   follow the 0x01 type byte:

   $ cut -d+ -f3- ledger/key.txt | base64 -d | tail -c 32 > ledger-key.raw
   $ (echo 302a300506032b6570032100 | xxd -r -p; cat ledger-key.raw) > ledger-key.der
   $ openssl pkey -pubin -inform DER -in ledger-key.der -out ledger-key.pem

   ledger/checkpoint.txt is a C2SP signed note: the signed text (origin, tree size {led['tree_size']},
   root hash) is everything up to and including the newline before the blank line; after the
   blank line, the signature line is "— NAME BASE64", where BASE64 decodes to a 4-byte key
   hash followed by the 64-byte Ed25519 signature. Cut both, then check:

   $ sed '/^$/,$d' ledger/checkpoint.txt > checkpoint.body
   $ sed '1,/^$/d' ledger/checkpoint.txt | grep -F " $(cut -d+ -f1 ledger/key.txt) " | awk '{{print $NF}}' | base64 -d | tail -c +5 > checkpoint.sig
   $ openssl pkeyutl -verify -pubin -inkey ledger-key.pem -rawin -in checkpoint.body -sigfile checkpoint.sig

4. Every exhibit's ledger entries are in that signed checkpoint. Each line of
   ledger/entries.jsonl holds an entry (base64 of its RFC 8785 JSON) and its RFC 9162 inclusion
   proof; verify_proofs.py (Python 3, standard library only: read it, it is short) checks every
   proof against the checkpoint's root hash and prints one line per entry:

   $ python3 verify_proofs.py

   By hand, for one entry:
     leaf = SHA-256(0x00 || entry bytes)
     fn = index, sn = tree_size - 1, r = leaf
     for each proof hash p:
        if fn is odd or fn == sn: r = SHA-256(0x01 || p || r); while fn is even and fn != 0: fn >>= 1, sn >>= 1
        else:                     r = SHA-256(0x01 || r || p)
        fn >>= 1, sn >>= 1
     the proof is good if sn == 0 and r equals the root hash in ledger/checkpoint.txt (RFC 9162 2.1.3.2).
   Each exhibit's "clip.ingested" entry states the sha256 and size the store verified on docking.
   An exhibit whose clip was disposed of under the retention policy before this bundle was
   made has no media file: the manifest marks it "disposed" and its "clip.disposed" entry (the
   tombstone: hash, rule, reason, approver) is among the entries, so the ledger still proves the
   clip existed, what its bytes were, and when and why they were deleted.

{token}6. Everything above, and more (each exhibit's hash against the manifest and its ledger
   entry, and the signing key's validity period), with the evidence store's verifier:

   $ evidence verify bundle BUNDLE.zip --key 'LEDGER-VERIFIER-KEY' --bundle-key force-bundle-keys.json{tsa_opt}

   (force-bundle-keys.json: the force's published key history, GET /api/v1/bundles/keys.)

7. That the log only grew since this bundle was made (no entry removed or rewritten later):

   $ evidence verify ledger --api https://STORE --checkpoint ledger/checkpoint.txt
""".encode()


TSA_WARNING = (
    "   Do NOT trust ledger/tsa-ca.pem because it is in this bundle: whoever could change the bundle\n"
    "   could replace it with a certificate of their own. Obtain the TSA's root certificate\n"
    "   independently, from the TSA operator's website (the timestamping service named in the\n"
    "   token), and check that it is the same certificate (compare the SHA-256 fingerprints):\n\n"
    "   $ openssl x509 -in ledger/tsa-ca.pem -noout -subject -fingerprint -sha256\n\n"
    "   or run the command above with -CAfile pointing at the root you obtained yourself.\n\n"
)


def _token_steps(has_token: bool, has_tsa_ca: bool) -> tuple[str, str]:
    """Step 4 of VERIFY.txt, and the verifier's --tsa-ca option for step 5."""
    if not has_token:
        return ("5. No RFC 3161 timestamp token: no TSA was configured when this bundle was made.\n\n", "")
    if has_tsa_ca:
        return ("5. The checkpoint's RFC 3161 timestamp. ledger/tsa-ca.pem is the certificate chain of the\n"
                "   timestamping authority (TSA) that issued ledger/checkpoint.tsr:\n\n"
                "   $ openssl ts -verify -in ledger/checkpoint.tsr -data ledger/checkpoint.txt "
                f"-CAfile {TSA_CA}\n\n" + TSA_WARNING,
                " --tsa-ca TSA-ROOT.pem")
    return ("5. The checkpoint's RFC 3161 timestamp (needs the TSA's root certificate, tsa-ca.pem, from\n"
            "   the TSA operator's website):\n\n"
            "   $ openssl ts -verify -in ledger/checkpoint.tsr -data ledger/checkpoint.txt -CAfile tsa-ca.pem\n\n",
            " --tsa-ca tsa-ca.pem")


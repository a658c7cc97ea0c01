"""Media facts, browser derivatives and redacted copies, made with ffmpeg (docs/media.md).

The modules, by what they hold (import from them; this package re-exports nothing):

- `runner`: which ffmpeg/ffprobe, their version, running them with a time limit, writing an
  output atomically (a full disk is `DiskFull`), hashing files;
- `probe`: `MediaFacts` and `probe`, the metadata read and the decode check;
- `derivatives`: the proxy and thumbnail, and the `Recipe` every derivative records;
- `redaction`: checking and rendering a redacted copy (black boxes, silenced ranges).
"""

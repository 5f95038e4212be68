# Writes test wheels and sdists with Python's zipfile/tarfile (hashes in RECORD are real).
# Argument: a JSON spec {"dir": OUT, "wheels": [{"name", "version", "files": {path: text}}],
# "sdists": [{"name", "version", "backend"}]}. Used by tests/packages.rs and the browser
# tests (tests/ui/harness.mjs).
import base64, hashlib, io, json, os, sys, tarfile, zipfile
spec = json.loads(sys.argv[1])
out = spec["dir"]
for w in spec.get("wheels", []):
    name, ver, files = w["name"], w["version"], w["files"]
    di = "%s-%s.dist-info" % (name, ver)
    files = dict(files)
    files[di + "/METADATA"] = "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, ver)
    files[di + "/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, text in files.items():
        data = text.encode()
        h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (path, h, len(data)))
    record.append(di + "/RECORD,,")
    files[di + "/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(os.path.join(out, "%s-%s-py3-none-any.whl" % (name, ver)), "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
for s in spec.get("sdists", []):
    name, ver, backend = s["name"], s["version"], s["backend"]
    root = "%s-%s" % (name, ver)
    files = {
        root + "/pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n\n[project]\nname = "%s"\nversion = "%s"\n' % (name, ver),
        root + "/PKG-INFO": "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, ver),
        root + "/backend.py": backend,
    }
    with tarfile.open(os.path.join(out, root + ".tar.gz"), "w:gz") as t:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))

#!/usr/bin/env python3
"""Cluster benchmarks: real `actorseg node` processes on 127.0.0.1 (see bench/README.md).

  throughput  one job with 1 and with 2 single-slot worker processes (target: >= 1.8x)
  failover    time from a worker's SIGKILL to its tile being re-queued and re-run
  recovery    the coordinator's recovery time for a job of 10,000 tiles (killed half way, restarted)

Prints its figures; reads timings from the nodes' JSON logs (ACTORSEG_LOG_FORMAT=json).
"""
import argparse, json, os, shutil, signal, socket, subprocess, sys, tempfile, time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DLL = os.path.join(ROOT, "src/Cli/bin/Release/net10.0/actorseg.dll")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def ts(ev):
    t = ev["@t"]
    # 2026-11-24T19:09:20.1234567Z -> microseconds precision for fromisoformat
    base, frac = t[:-1].split(".") if "." in t else (t[:-1], "0")
    return datetime.fromisoformat(base + "." + (frac + "000000")[:6]).timestamp()


ALL = []


class Node:
    def __init__(self, work, name, args, env=None):
        ALL.append(self)
        self.log_path = os.path.join(work, name + ".log")
        self.f = open(self.log_path, "w")
        e = dict(os.environ, ACTORSEG_LOG_FORMAT="json", ACTORSEG_DOWNAFTERSECONDS="5", ACTORSEG_HEARTBEATPAUSESECONDS="3")
        e.update(env or {})
        self.p = subprocess.Popen(["dotnet", DLL] + args, stdout=self.f, stderr=subprocess.STDOUT, env=e)
        self.name = name

    def events(self):
        out = []
        with open(self.log_path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try: out.append(json.loads(line))
                    except json.JSONDecodeError: pass
        return out

    def find(self, pred):
        return [e for e in self.events() if pred(e)]

    def wait(self, pred, timeout, what):
        t0 = time.time()
        while time.time() - t0 < timeout:
            hits = self.find(pred)
            if hits: return hits[0]
            if self.p.poll() is not None: raise SystemExit(f"{self.name} exited ({self.p.returncode}) waiting for {what}; see {self.log_path}")
            time.sleep(0.1)
        raise SystemExit(f"timed out waiting for {what}; see {self.log_path}")

    def kill(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            self.p.wait(30)


def msg(e): return e.get("@mt", "")


def cluster(work, workers, slots=1, coord_env=None, db=None):
    pc = free_port()
    seeds = f"akka.tcp://actorseg@127.0.0.1:{pc}"
    ports = [free_port() for _ in range(workers)]
    if workers: seeds += f",akka.tcp://actorseg@127.0.0.1:{ports[0]}"
    db = db or f"Data Source={os.path.join(work, 'journal.db')}"
    coord_args = ["node", "--roles", "coordinator", "--port", str(pc), "--seeds", seeds, "--db", db]
    coord = Node(work, "coordinator", coord_args, coord_env)
    ws = [Node(work, f"worker{i+1}", ["node", "--roles", "tile-worker", "--port", str(p), "--seeds", seeds, "--workers", str(slots)]) for i, p in enumerate(ports)]
    t0 = time.time()
    while len(coord.find(lambda e: msg(e).startswith("Worker {Worker} joined"))) < workers * slots:
        if time.time() - t0 > 90: raise SystemExit("workers did not join; see " + coord.log_path)
        time.sleep(0.1)
    return coord, ws, pc, coord_args


def submit(work, port, args, name="submit"):
    f = open(os.path.join(work, name + ".log"), "w")
    return subprocess.Popen(["dotnet", DLL, "submit"] + args + ["--coordinator", f"akka.tcp://actorseg@127.0.0.1:{port}"],
                            stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, ACTORSEG_LOG_FORMAT="json"))


def generate(work, size, name="img"):
    img = os.path.join(work, name + ".tif")
    if not os.path.exists(img):
        subprocess.run(["dotnet", DLL, "generate", "-o", work, "--name", name, "--width", str(size), "--height", str(size)], check=True, capture_output=True)
    return img, os.path.join(work, name + "_mask.tif")


def finished(coord):
    return coord.find(lambda e: msg(e).startswith("Job {JobId}: all {Total} tiles done"))


def throughput(base, size, tile):
    results = {}
    for n in (1, 2):
        work = os.path.join(base, f"tp{n}"); os.makedirs(work, exist_ok=True)
        img, mask = generate(base, size)
        coord, ws, pc, _ = cluster(work, n)
        # long-running nodes are warm: the same job first, to another folder (every worker gets tiles of the measured
        # size and the coordinator stitches a graph of the measured size, so neither the JIT's tier-up, which a smaller
        # warm-up job left running in the coordinator during the measured tile phase, nor the first touch of the tile
        # buffers is in the figure)
        if submit(work, pc, [img, "--mask", mask, "--out", os.path.join(work, "warm"), "--tile-size", str(tile)], "warm").wait() != 0:
            raise SystemExit("warm-up job failed")
        t0 = time.time()
        s = submit(work, pc, [img, "--mask", mask, "--out", os.path.join(work, "out"), "--tile-size", str(tile)])
        rc = s.wait()
        wall = time.time() - t0
        done = finished(coord)[-1]
        fin = coord.find(lambda e: msg(e).startswith("Job {JobId} finished"))[-1]
        sub = [e for e in coord.find(lambda e: msg(e).startswith("Job {JobId} submitted:")) if e.get("JobId") == fin.get("JobId")][0]
        # the job as the coordinator sees it, from its submission to its end (the client's wall time adds the client's
        # own process start and its contact with the cluster, which no number of workers changes)
        job = ts(fin) - ts(sub)
        results[n] = dict(tiles_s=done["Seconds"], mps=done["MPps"], wall=wall, job=job, stitch=fin["Stitch"], rc=rc)
        for w in ws: w.kill(signal.SIGTERM)
        coord.kill(signal.SIGTERM)
        print(f"  {n} worker process(es): tile phase {done['Seconds']:.1f}s ({done['MPps']:.1f} MP/s), whole job {job:.1f}s in the coordinator "
              f"(prepare {fin['Prepare']:.1f}s, stitch {fin['Stitch']:.1f}s, write {fin['Write']:.1f}s), {wall:.1f}s for the submitting client (submit exit {rc})", flush=True)
    r = results
    print(f"throughput {size}x{size}, tiles {tile}: 1 worker {r[1]['mps']:.1f} MP/s, 2 workers {r[2]['mps']:.1f} MP/s: "
          f"speed-up {r[2]['mps']/r[1]['mps']:.2f}x in the tile phase, {r[1]['job']/r[2]['job']:.2f}x for the whole job in the coordinator, "
          f"{r[1]['wall']/r[2]['wall']:.2f}x for the client's wall time")


def failover(base, size, tile):
    work = os.path.join(base, "failover"); os.makedirs(work, exist_ok=True)
    img, mask = generate(base, size)
    coord, ws, pc, _ = cluster(work, 2)
    s = submit(work, pc, [img, "--mask", mask, "--out", os.path.join(work, "out"), "--tile-size", str(tile)])
    coord.wait(lambda e: msg(e).startswith("Job {JobId} planned"), 60, "plan")
    time.sleep(2.0)
    victim = ws[1]
    killed = time.time()
    victim.kill()
    lost = coord.wait(lambda e: "re-queued" in msg(e) and "is {Why}" in msg(e), 120, "the lost worker's tiles to be re-queued")
    rc = s.wait()
    requeue_s = ts(lost) - killed
    done = finished(coord)[0]
    print(f"failover: worker SIGKILLed; its {lost['Requeued']} tile(s) re-queued after {requeue_s:.1f}s ({lost['Why']}); "
          f"job finished with exit {rc}, {done['Seconds']:.1f}s tile phase")
    for w in ws: w.kill(signal.SIGTERM)
    coord.kill(signal.SIGTERM)


def recovery(base, size, tile, spacing, snapshot_every):
    work = os.path.join(base, f"recovery-{snapshot_every}"); os.makedirs(work, exist_ok=True)
    img, mask = generate(base, size, "rec")
    env = {"ACTORSEG_SNAPSHOTEVERY": str(snapshot_every)}
    coord, ws, pc, coord_args = cluster(work, 2, slots=1, coord_env=env)
    s = submit(work, pc, [img, "--out", os.path.join(work, "out"), "--tile-size", str(tile), "--spacing", str(spacing), "--halo", str(int(spacing * 2) + 2), "--job-id", "recovery"])
    plan = coord.wait(lambda e: msg(e).startswith("Job {JobId} planned"), 120, "plan")
    total = plan["Tiles"]
    # kill the coordinator when about half the tiles are done
    t0 = time.time()
    while True:
        prog = coord.find(lambda e: msg(e).startswith("Job {JobId}: {Done}/{Total} tiles"))
        if prog and prog[-1]["Done"] >= total // 2: break
        if time.time() - t0 > 600: raise SystemExit("job too slow")
        time.sleep(0.2)
    coord.kill()
    t_restart = time.time()
    coord2 = Node(work, "coordinator2", coord_args, env)
    rec = coord2.wait(lambda e: msg(e).startswith("Coordinator recovered"), 300, "recovery")
    rc = s.wait()
    done = finished(coord2)[0]
    print(f"recovery: job of {total} tiles, coordinator SIGKILLed with {prog[-1]['Done']} done (snapshot every {snapshot_every} events): "
          f"journal replayed in {rec['Seconds']:.2f}s ({rec['TilesDone']} finished tiles kept), restart to recovered {ts(rec) - t_restart:.1f}s "
          f"(process start included); {done['Recovered']} tiles not redone; job exit {rc}")
    for w in ws: w.kill(signal.SIGTERM)
    coord2.kill(signal.SIGTERM)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="*", default=["throughput", "failover", "recovery"])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--tile", type=int, default=2048)
    ap.add_argument("--recovery-size", type=int, default=3200, help="image side for the 10,000-tile job (tile 32 px)")
    ap.add_argument("--snapshot-every", type=int, nargs="*", default=[1000, 100000])
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    if not os.path.exists(DLL): raise SystemExit("build first: ./run.sh build")
    base = tempfile.mkdtemp(prefix="actorseg-bench-cluster-")
    print(f"work: {base}  ({os.cpu_count()} cores)", flush=True)
    try:
        if "throughput" in a.what: throughput(base, a.size, a.tile)
        if "failover" in a.what: failover(base, a.size, a.tile)
        if "recovery" in a.what:
            for n in a.snapshot_every: recovery(base, a.recovery_size, 32, 4.0, n)
    finally:
        for n in ALL:
            if n.p.poll() is None: n.p.kill()
        if not a.keep: shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

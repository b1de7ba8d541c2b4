"""Compares two heaptrack runs of bench/profile/heap.sh site by site, per connection."""
import collections
import re
import sys

# Frames that only say "an allocation happened": skipped to name the site by its callers.
NOISE = re.compile(
    r"^(_R|0x|alloc|allocate|alloc_impl|box_new|new<>|new$|call_once|do_call|catch_unwind|"
    r"with_mut|poll<>|\{closure|finish_grow|grow|realloc|do_reserve|reserve|with_capacity|"
    r"try_allocate|fallible|new_uninit|prepare_resize|resize_inner|do_alloc|clone_from|"
    r"try_reserve|$)"
)


def load(path, depth):
    sites = collections.Counter()
    for line in open(path):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        frames = [f.strip() for f in stack.split(";")[::-1]]
        frames = [re.sub(r"\s+\S+\)$", ")", f) for f in frames if not NOISE.match(f.strip())]
        frames = [re.sub(r"::h[0-9a-f]{16}", "", f) for f in frames]
        frames = [re.sub(r"\b(baseline|tower_sse_server)::", "bin::", f) for f in frames]
        sites[" < ".join(frames[:depth])] += int(count)
    return sites


def main():
    a_name, b_name, depth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    n_a = int(open(a_name + ".n").read())
    n_b = int(open(b_name + ".n").read())
    for kind, unit in (("peak", "B"), ("allocs", "allocations")):
        a, b = load(f"{a_name}.{kind}", depth), load(f"{b_name}.{kind}", depth)
        print(f"== {kind}: per connection {sum(a.values()) / n_a:.1f} -> "
              f"{sum(b.values()) / n_b:.1f} {unit}")
        rows = sorted(set(a) | set(b), key=lambda k: -abs(b[k] / n_b - a[k] / n_a))
        for k in rows[:25]:
            d = b[k] / n_b - a[k] / n_a
            if abs(d) >= 0.5:
                print(f"{d:+9.1f}  {a[k] / n_a:8.1f} {b[k] / n_b:8.1f}  {k[:220]}")


try:
    main()
except BrokenPipeError:
    pass

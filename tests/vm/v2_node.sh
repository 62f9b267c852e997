# A pure cgroup v2 Kubernetes node, as kubelet and containerd lay it out, with the real daemon
# watching it. Sourced by the VM's init (tests/src/vm.rs) after its preamble; run once per
# kubelet cgroup driver: `node_run systemd`, `node_run cgroupfs`. What the test asserts is
# printed between `=== BEGIN <section> ===` / `=== END <section> ===` markers.
#
# Layouts (kubernetes pkg/kubelet/cm/cgroup_manager_linux.go names the pod levels, the systemd
# driver escaping the uid's `-` as `_`; containerd's CRI gives runc `<pod slice>:cri-containerd:<id>`
# and runc's systemd driver makes it a scope; with cgroupfs it is `<pod parent>/<id>`):
#   systemd:  kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/
#             cri-containerd-<id>.scope; units in system.slice/<unit>.service
#   cgroupfs: kubepods/burstable/pod<uid>/<id>; units still in system.slice (systemd runs them)
# kubelet's logs (pkg/kubelet/kuberuntime: BuildContainerLogsDirectory, legacyLogSymlink):
#   /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart count>.log and the link
#   /var/log/containers/<pod>_<namespace>_<container>-<container id>.log to it.

CG=/sys/fs/cgroup
CONTROLLERS="+memory +cpu +pids"
NODE=cp1
NS=kube-system
# kubelet names a static pod's uid after a hash of its manifest (32 hex digits, no dashes).
APISERVER_UID=2f7a5e1bd4c3089e6a1f0b7c5d9e8a41
SCHEDULER_UID=8b1d0c6e2a4f97e35c0d1b2a6f8e7d13
CONTROLLER_MANAGER_UID=c4e9a1f07b2d6e8a3f5c1d0b9e7a2c64
PORT=9750

stamp() { echo "T $1 $(cut -d' ' -f1 /proc/uptime)"; }

# Mounts the unified hierarchy alone (a pure v2 node) and lets the root delegate controllers.
cgroup_v2() {
    mount -t cgroup2 -o nsdelegate cgroup2 "$CG" || return 1
    echo "$CONTROLLERS" > "$CG/cgroup.subtree_control"
}

# Creates cgroup `$1` (relative to the root) with every ancestor, enabling the controllers in
# each ancestor's subtree_control as systemd and kubelet do.
cgroup_make() {
    dir="$CG"
    for part in $(echo "$1" | tr '/' ' '); do
        [ "$dir" = "$CG" ] || echo "$CONTROLLERS" > "$dir/cgroup.subtree_control" 2>/dev/null
        dir="$dir/$part"
        [ -d "$dir" ] || mkdir "$dir"
    done
    echo "$dir"
}

# A new 64-digit container id, as containerd makes them.
new_id() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# kubelet's log files for a container: the pod's directory, the container's, the attempt's
# log file the runtime writes, and the /var/log/containers link kubelet makes per container.
kubelet_logs() { # namespace pod uid container id attempt
    dir="/var/log/pods/$1_$2_$3/$4"
    mkdir -p "$dir" /var/log/containers
    : > "$dir/$6.log"
    ln -sf "$dir/$6.log" "/var/log/containers/$2_$1_$4-$5.log"
}

# The cgroup of a container of pod `uid` in QoS class burstable, by driver.
container_cgroup() { # driver uid id
    case "$1" in
        systemd) echo "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod$(echo "$2" | tr '-' '_').slice/cri-containerd-$3.scope" ;;
        cgroupfs) echo "kubepods/burstable/pod$2/$3" ;;
    esac
}

# Runs `$2...` in cgroup `$1` (the process joins it before it execs, as runc's init does).
run_in() {
    cgroup="$1"; shift
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG/$cgroup" "$@"
}

start_daemon() { # driver [name of this run]
    run="${2:-$1}"
    cgroup_make system.slice/node-runtime-monitor.service > /dev/null
    # kubelet's driver and containerd's runc option agree, as an installer sets them.
    sed -i "s/^cgroupDriver: .*/cgroupDriver: $1/" /var/lib/kubelet/config.yaml
    systemd_cgroup=false
    [ "$1" = systemd ] && systemd_cgroup=true
    sed -i "s/SystemdCgroup = .*/SystemdCgroup = $systemd_cgroup/" /etc/containerd/config.toml
    rm -rf "/run/nrm-$run"
    # Started here, not through `run_in ... &` (a subshell: $! would not be the daemon).
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG/system.slice/node-runtime-monitor.service" \
        /usr/bin/node-runtime-monitor run \
        --listen "127.0.0.1:$PORT" --state-dir "/run/nrm-$run" --host-root / \
        --attribution-hold-ms 10000 --audit-interval-seconds 3600 \
        --memory-read-seconds 1 --memory-pressure-window-seconds 3 > "/tmp/daemon-$run.log" 2>&1 &
    DAEMON=$!
    i=0
    while ! wget -qO- "http://127.0.0.1:$PORT/healthz" > /dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 600 ] || ! kill -0 $DAEMON 2>/dev/null; then
            echo "DAEMON NOT SERVING"
            return 1
        fi
        sleep 0.2
    done
}

stop_daemon() {
    kill -TERM $DAEMON
    wait $DAEMON
    echo "DAEMON EXIT $?"
}

# Waits (bounded) until /findings has every word given.
wait_findings() {
    i=0
    while [ $i -lt 300 ]; do
        body=$(wget -qO- "http://127.0.0.1:$PORT/findings")
        ok=1
        for word in "$@"; do
            case "$body" in *"$word"*) ;; *) ok=0 ;; esac
        done
        [ $ok = 1 ] && return 0
        i=$((i + 1))
        sleep 0.2
    done
    echo "FINDINGS MISSING $*"
}

section() { # name command...
    name="$1"; shift
    echo "=== BEGIN $name ==="
    "$@"
    echo
    echo "=== END $name ==="
}

# A static pod's container killed by the OOM killer at its memory.max, re-created by kubelet
# with a new container id each time (and its attempt's log file), three times.
static_pod_oom_loop() { # driver
    pod="kube-apiserver-$NODE"
    for attempt in 0 1 2; do
        id=$(new_id)
        kubelet_logs $NS "$pod" $APISERVER_UID kube-apiserver "$id" $attempt
        cgroup=$(container_cgroup "$1" $APISERVER_UID "$id")
        dir=$(cgroup_make "$cgroup")
        echo 32M > "$dir/memory.max"
        echo 0 > "$dir/memory.swap.max"
        # As kubelet >= 1.28 sets it on every container on cgroup v2 (unless
        # singleProcessOOMKill): the kernel then counts the victim twice.
        echo 1 > "$dir/memory.oom.group"
        run_in "$cgroup" /usr/local/bin/kube-apiserver
        echo "APISERVER $1 $attempt $id exit $?"
        sleep 1
        rmdir "$dir"
    done
}

# A static pod's container SIGKILLed by kubelet (a process of kubelet.service), three times.
static_pod_killed_by_kubelet() { # driver
    pod="kube-scheduler-$NODE"
    cgroup_make system.slice/kubelet.service > /dev/null
    for attempt in 0 1 2; do
        id=$(new_id)
        kubelet_logs $NS "$pod" $SCHEDULER_UID kube-scheduler "$id" $attempt
        cgroup=$(container_cgroup "$1" $SCHEDULER_UID "$id")
        dir=$(cgroup_make "$cgroup")
        # Not `run_in ... &`: a function in the background is a subshell, and $! would be it.
        sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG/$cgroup" /usr/local/bin/kube-scheduler &
        victim=$!
        sleep 1
        run_in system.slice/kubelet.service /usr/bin/kubelet -9 $victim
        wait $victim
        echo "SCHEDULER $1 $attempt $id exit $?"
        sleep 1
        rmdir "$dir"
    done
}

# A process of containerd.service OOM-killed at the unit's MemoryMax (systemd writes it to the
# unit's memory.max), restarted by systemd (Restart=always) three times.
unit_oom() { # driver
    dir=$(cgroup_make system.slice/containerd.service)
    echo 32M > "$dir/memory.max"
    echo 0 > "$dir/memory.swap.max"
    for attempt in 1 2 3; do
        run_in system.slice/containerd.service /bin/dd if=/dev/zero of=/dev/null bs=256M count=1
        echo "CONTAINERD-UNIT $1 $attempt exit $?"
        sleep 1
    done
    # The real containerd of cri_run runs in this unit's cgroup (tests/src/containerd.rs): with
    # its MemoryMax back to none.
    echo max > "$dir/memory.max"
}

# kube-controller-manager's container held at its memory.high (kubelet's memory QoS and a
# unit's MemoryHigh= write it), without swap: each write of a memory hog to a tmpfs (memory
# that cannot be reclaimed) returns over the limit and the kernel throttles it, a full stall
# on memory, never an OOM kill. Once the daemon reports the pressure the limit is lifted and
# the hog finishes by itself.
static_pod_memory_pressure() { # driver
    pod="kube-controller-manager-$NODE"
    id=$(new_id)
    kubelet_logs $NS "$pod" $CONTROLLER_MANAGER_UID kube-controller-manager "$id" 0
    cgroup=$(container_cgroup "$1" $CONTROLLER_MANAGER_UID "$id")
    dir=$(cgroup_make "$cgroup")
    echo 16M > "$dir/memory.high"
    echo 0 > "$dir/memory.swap.max"
    stamp "$1-pressure-start"
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG/$cgroup" /bin/dd if=/dev/zero of=/tmp/hog-fill bs=1M count=48 2>/dev/null &
    hog=$!
    wait_findings control-plane-memory-pressure "kube-system/$pod"
    stamp "$1-pressure-seen"
    section "pressure-$1" cat "${dir%/*}/memory.pressure"
    echo max > "$dir/memory.high"
    wait $hog
    echo "HOG $1 exit $?"
    rm -f /tmp/hog-fill
    rmdir "$dir"
}

# Removes kubelet's cgroups (leaves first), as on a node that never ran the other driver.
remove_kubepods() {
    for top in kubepods.slice kubepods; do
        [ -d "$CG/$top" ] && find "$CG/$top" -depth -type d -exec rmdir {} \;
    done
}

node_run() { # driver
    stamp "$1-start"
    start_daemon "$1" || { section "daemon-log-$1" cat "/tmp/daemon-$1.log"; return 1; }
    stamp "$1-daemon-serving"
    static_pod_oom_loop "$1"
    static_pod_killed_by_kubelet "$1"
    unit_oom "$1"
    [ "$1" = systemd ] && static_pod_memory_pressure "$1"
    stamp "$1-events-caused"
    wait_findings static-pod-restart-loop "kube-apiserver-$NODE/kube-apiserver" "kube-scheduler-$NODE/kube-scheduler" \
        memory-limit-oom-kill host-service-restart-loop containerd.service
    stamp "$1-findings-seen"
    section "findings-$1" wget -qO- "http://127.0.0.1:$PORT/findings"
    section "metrics-$1" wget -qO- "http://127.0.0.1:$PORT/metrics"
    stop_daemon
    section "daemon-log-$1" tail -n 300 "/tmp/daemon-$1.log"
    # The next driver's node starts from no cgroups of kubelet's.
    remove_kubepods
    stamp "$1-done"
}

# Real containerd runs a pod through the CRI (tests/src/bin/cri-pod-smoke.rs) on the cgroupfs
# driver's v2 layout, with a daemon watching.
cri_run() {
    stamp cri-start
    start_daemon cgroupfs cri || { section daemon-log-cri cat /tmp/daemon-cri.log; return 1; }
    stamp cri-daemon-serving
    /bin/cri-pod-smoke "127.0.0.1:$PORT"
    echo "CRI EXIT $?"
    stamp cri-done
    stop_daemon
    section daemon-log-cri tail -n 300 /tmp/daemon-cri.log
}

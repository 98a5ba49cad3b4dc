#!/usr/bin/env bash
# Benchmark (not a test) of bloscar as a user meets it: a real Triton server
# (nvidia-pytriton, CPU) and real tritonclient[grpc], in two network namespaces joined by
# a veth pair shaped with tc tbf, with real-image tensors (scikit-image). Per link and
# tensor: the median ModelInfer round trip (tensor sent, the same tensor echoed back) in
# these modes, interleaved round by round:
#
#   direct       tritonclient -> link -> Triton
#   pair         tritonclient -> outbound bloscar -> link -> inbound bloscar -> Triton
#   baseline     the same pair with a second binary (--baseline)
#   gzip-direct  direct, with gzip requests (tritonclient) and compressed responses (Triton)
#   gzip-pair    gzip-direct's apps, through a bloscar pair
#   pair-off     the pair with compression off (BLOSCAR_MIN_TENSOR_BYTES=1GiB): proxy cost
#   http-direct  tritonclient[http] (KServe v2 REST, binary tensors) -> link -> Triton
#   http-pair    http-direct's client through a bloscar pair
#
# Needs root (ip netns, tc). Prints Markdown tables; docs/link-benchmark.md explains them.
# Run with --help for the options.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

usage() {
    cat <<'EOF'
Usage: scripts/bench-link.sh [options]

  --links LIST          links to measure, in order (default unshaped,1gbit,100mbit);
                        each is "unshaped" or a rate such as 100mbit, 2.5gbit
  --rounds N            measured rounds per link (default 15; --quick: 3)
  --modes LIST          among direct,pair,baseline,gzip-direct,gzip-pair,pair-off,
                        http-direct,http-pair (default: all but the http ones;
                        baseline only with --baseline)
  --tensors LIST        among frames_u8,imagenet_f32,imagenet_f16,activations_f32,
                        masks_bool,superpixels_i32,classes_u8 (default: all)
  --bloscar PATH        the binary under test (default $CARGO_TARGET_DIR/release/bloscar,
                        CARGO_TARGET_DIR defaulting to target)
  --baseline PATH       a second binary for the baseline mode (e.g. /work/baseline/bloscar)
  --baseline-link-mbps auto|default|N
                        BLOSCAR_LINK_MBPS for the baseline pair: auto (default) gives it
                        the tbf rate of each shaped link and leaves it unset on the
                        unshaped one; default never sets it; N sets N everywhere
  --quick               3 rounds, tensors frames_u8,imagenet_f32,activations_f32
  --out DIR             tensors, logs and per-link records
                        (default $CARGO_TARGET_DIR/bench-link)
  --json-out FILE       every figure as JSON (default OUT/bench-link.json)
  --netns-prefix P      names of the namespaces (P-client, P-server) and veths (P-c,
                        P-s); default blink. A run deletes its own namespaces first and
                        last, so two runs at once need different prefixes (at most 12
                        characters)
  -h, --help            this text
EOF
}

die() {
    echo "bench-link: $*" >&2
    exit 2
}

target_dir=${CARGO_TARGET_DIR:-target}
links=unshaped,1gbit,100mbit
rounds=
modes=
tensors=
bloscar=$target_dir/release/bloscar
baseline=
baseline_link_mbps=auto
quick=0
out=$target_dir/bench-link
json_out=
netns_prefix=blink
while (($#)); do
    case $1 in
        --links) links=${2:?}; shift 2 ;;
        --rounds) rounds=${2:?}; shift 2 ;;
        --modes) modes=${2:?}; shift 2 ;;
        --tensors) tensors=${2:?}; shift 2 ;;
        --bloscar) bloscar=${2:?}; shift 2 ;;
        --baseline) baseline=${2:?}; shift 2 ;;
        --baseline-link-mbps) baseline_link_mbps=${2:?}; shift 2 ;;
        --quick) quick=1; shift ;;
        --out) out=${2:?}; shift 2 ;;
        --json-out) json_out=${2:?}; shift 2 ;;
        --netns-prefix) netns_prefix=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done
if ((quick)); then
    rounds=${rounds:-3}
    tensors=${tensors:-frames_u8,imagenet_f32,activations_f32}
fi
rounds=${rounds:-15}
tensors=${tensors:-frames_u8,imagenet_f32,imagenet_f16,activations_f32,masks_bool,superpixels_i32,classes_u8}
if [[ -z $modes ]]; then
    modes=direct,pair${baseline:+,baseline},gzip-direct,gzip-pair,pair-off
fi
json_out=${json_out:-$out/bench-link.json}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a whole number above 0"
[[ $netns_prefix =~ ^[a-zA-Z0-9][a-zA-Z0-9_-]{0,11}$ ]] || die "--netns-prefix: 1 to 12 letters, digits, - or _"
[[ $baseline_link_mbps =~ ^(auto|default|[0-9]+(\.[0-9]+)?)$ ]] || die "--baseline-link-mbps: auto, default or a number"

IFS=, read -ra mode_list <<<"$modes"
IFS=, read -ra link_list <<<"$links"
has_mode() {
    local m
    for m in "${mode_list[@]}"; do [[ $m == "$1" ]] && return 0; done
    return 1
}
for m in "${mode_list[@]}"; do
    case $m in direct | pair | baseline | gzip-direct | gzip-pair | pair-off | http-direct | http-pair) ;;
        *) die "unknown mode $m" ;;
    esac
done
[[ $EUID -eq 0 ]] || die "needs root (ip netns, tc)"
if has_mode pair || has_mode gzip-pair || has_mode pair-off || has_mode http-pair; then
    [[ -x $bloscar ]] || die "no binary at $bloscar (cargo build --release --locked --bin bloscar, or --bloscar PATH)"
    bloscar=$(realpath "$bloscar")
fi
if has_mode baseline; then
    [[ -n $baseline && -x $baseline ]] || die "mode baseline needs --baseline PATH of an executable"
    baseline=$(realpath "$baseline")
fi

# Link label -> tbf rate in Mbit/s (empty for unshaped).
rate_mbps() {
    case $1 in
        unshaped) echo "" ;;
        *[0-9]mbit) echo "${1%mbit}" ;;
        *[0-9]gbit) awk -v g="${1%gbit}" 'BEGIN { print g * 1000 }' ;;
        *) die "link $1: expected unshaped, NNmbit or NNgbit" ;;
    esac
}
for link in "${link_list[@]}"; do rate_mbps "$link" >/dev/null; done

# A configuration inherited from the caller's shell would change what is measured.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^BLOSCAR_' || true)

ns_client=$netns_prefix-client
ns_server=$netns_prefix-server
veth_client=$netns_prefix-c
veth_server=$netns_prefix-s
ip_client=10.77.0.1
ip_server=10.77.0.2
triton_port=8001     # Triton, no response compression (HTTP/REST +1, metrics +2)
triton_http_port=$((triton_port + 1))
triton_rc_port=8011  # Triton with response compression, for the gzip modes
mkdir -p "$out/logs"
out=$(realpath "$out")
logs=$out/logs
rm -f "$logs"/*.log "$logs"/*.ready "$out"/link-*.json # an earlier run's, which would mislead
python=$repo/.venvs/pytriton/bin/python

# Triton takes a while to unload its models; a sidecar stops at once.
stop_wait_tenths=300
source scripts/netns-pair.sh

alive_or_die() {
    kill -0 "$1" 2>/dev/null || {
        tail -n 30 "$logs/$2.log" >&2
        die "$2 exited early (log: $logs/$2.log)"
    }
}

# --- tensors (made once, with the scikit-image environment) -------------------------
tensor_dir=$out/tensors
if [[ ! -f $tensor_dir/manifest.json || scripts/bench_link/tensors.py -nt $tensor_dir/manifest.json ]]; then
    echo "bench-link: making the tensors from scikit-image's images (once)" >&2
    bash scripts/venv-skimage.sh
    .venvs/skimage/bin/python scripts/bench_link/tensors.py "$tensor_dir" >&2
fi
bash scripts/venv-pytriton.sh

# --- namespaces and the link ---------------------------------------------------------
pair_up

# shape LINK: the same tbf on both veth ends' egress (requests leave the client's end,
# responses the server's), or none for unshaped.
#   burst: tokens for 5 ms at the rate (64 KiB at least). tbf refills with a
#     high-resolution timer, but a burst under about 1 ms of traffic makes it split the
#     64 KiB segments TSO hands to veth and wake up per packet; 5 ms lets a segment
#     pass whole while the average stays at the rate (at 100 Mbit/s: 64 KiB, a 5 ms
#     line-rate spike; a real NIC queue releases similar trains).
#   latency: a packet may wait 20 ms in the queue before tbf drops it: a switch-port
#     sized buffer (250 KB at 100 Mbit/s, 2.5 MB at 1 Gbit/s). Deep enough that TCP,
#     which sees a local qdisc drop as congestion, keeps the link busy even with the
#     veth's near-zero RTT; shallow enough not to add bufferbloat a real link lacks.
shape() {
    local rate ns dev burst
    rate=$(rate_mbps "$1")
    for ns in "$ns_client" "$ns_server"; do
        dev=$veth_client
        [[ $ns == "$ns_server" ]] && dev=$veth_server
        ip netns exec "$ns" tc qdisc del dev "$dev" root 2>/dev/null || true
        if [[ -n $rate ]]; then
            burst=$(awk -v r="$rate" 'BEGIN { b = r * 1e6 / 8 * 0.005; if (b < 65536) b = 65536; printf "%d", b }')
            ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate "${rate}mbit" burst "$burst" latency 20ms
        fi
    done
}

# --- Triton in the server namespace ---------------------------------------------------
start_triton() {
    local name=$1 port=$2 compression=$3
    rm -f "$logs/$name.ready"
    # HTTP/REST on all addresses too: the http modes reach it over the link.
    start "$name" "$ns_server" "$python" scripts/bench_link/server.py --manifest "$tensor_dir/manifest.json" \
        --grpc-port "$port" --http-address 0.0.0.0 --ready-file "$logs/$name.ready" --response-compression "$compression"
    local pid=$started_pid
    for ((i = 0; i < 600; i++)); do
        [[ -f $logs/$name.ready ]] && return 0
        alive_or_die "$pid" "$name"
        sleep 0.5
    done
    die "$name not ready after 300 s (log: $logs/$name.log)"
}
echo "bench-link: starting Triton in $ns_server (logs in $logs)" >&2
start_triton triton "$triton_port" none
if has_mode gzip-direct || has_mode gzip-pair; then
    # Level low: gRPC core picks the first algorithm the client accepts, gzip for tritonclient.
    start_triton triton-rc "$triton_rc_port" low
fi

# --- sidecar pairs ---------------------------------------------------------------------
# mode -> "inbound port, outbound port, Triton port"; admin ports are these + 100.
declare -A pair_ports=(
    [pair]="9440 9441 $triton_port"
    [gzip-pair]="9442 9443 $triton_rc_port"
    [baseline]="9444 9445 $triton_port"
    [pair-off]="9446 9447 $triton_port"
    [http-pair]="9448 9449 $triton_http_port"
)

# start_pair MODE LINK: starts MODE's inbound (server ns) and outbound (client ns) sidecar.
start_pair() {
    local mode=$1 link=$2 binary=$bloscar env_extra=() rate
    read -r in_port out_port app_port <<<"${pair_ports[$mode]}"
    case $mode in
        baseline)
            binary=$baseline
            rate=$(rate_mbps "$link")
            case $baseline_link_mbps in
                auto) [[ -n $rate ]] && env_extra=("BLOSCAR_LINK_MBPS=$rate") ;;
                default) ;;
                *) env_extra=("BLOSCAR_LINK_MBPS=$baseline_link_mbps") ;;
            esac
            ;;
        pair-off) env_extra=(BLOSCAR_MIN_TENSOR_BYTES=1GiB) ;;
    esac
    start "$mode-inbound-$link" "$ns_server" env BLOSCAR_LOG=warn "${env_extra[@]}" \
        BLOSCAR_MODE=inbound \
        BLOSCAR_INBOUND_LISTEN="0.0.0.0:$in_port" \
        BLOSCAR_INBOUND_FORWARD="127.0.0.1:$app_port" \
        BLOSCAR_ADMIN_LISTEN="0.0.0.0:$((in_port + 100))" \
        "$binary"
    start "$mode-outbound-$link" "$ns_client" env BLOSCAR_LOG=warn "${env_extra[@]}" \
        BLOSCAR_MODE=outbound \
        BLOSCAR_OUTBOUND_LISTEN="127.0.0.1:$out_port" \
        BLOSCAR_OUTBOUND_FORWARD="$ip_server:$in_port" \
        BLOSCAR_ADMIN_LISTEN="127.0.0.1:$((out_port + 100))" \
        "$binary"
}

wait_ready() {
    local ns=$1 port=$2 name=$3
    for ((i = 0; i < 100; i++)); do
        ip netns exec "$ns" curl -sf -o /dev/null "http://127.0.0.1:$port/ready" && return 0
        sleep 0.2
    done
    tail -n 30 "$logs/$name.log" >&2
    die "$name not ready (log: $logs/$name.log)"
}

# --- the links -------------------------------------------------------------------------
records=()
triton_groups=("${pgroups[@]}")
for link in "${link_list[@]}"; do
    shape "$link"
    client_args=()
    for mode in "${mode_list[@]}"; do
        case $mode in
            direct) client_args+=(--mode "direct=$ip_server:$triton_port") ;;
            gzip-direct) client_args+=(--mode "gzip-direct=$ip_server:$triton_rc_port,gzip") ;;
            http-direct) client_args+=(--mode "http-direct=http://$ip_server:$triton_http_port") ;;
            *)
                start_pair "$mode" "$link"
                read -r in_port out_port _ <<<"${pair_ports[$mode]}"
                wait_ready "$ns_server" $((in_port + 100)) "$mode-inbound-$link"
                wait_ready "$ns_client" $((out_port + 100)) "$mode-outbound-$link"
                target=127.0.0.1:$out_port
                [[ $mode == gzip-pair ]] && target+=,gzip
                [[ $mode == http-pair ]] && target=http://$target
                client_args+=(--mode "$mode=$target"
                    --metrics "$mode outbound=http://127.0.0.1:$((out_port + 100))/metrics"
                    --metrics "$mode inbound=http://$ip_server:$((in_port + 100))/metrics")
                ;;
        esac
    done
    echo "bench-link: link $link: $rounds rounds of ${tensors//,/ } in modes ${modes//,/ }" >&2
    # In the background and waited for: bash runs a trap for SIGTERM or SIGINT only once
    # the foreground command ends, and the client may take minutes.
    setsid ip netns exec "$ns_client" "$python" scripts/bench_link/client.py --tensors-dir "$tensor_dir" \
        --tensors "$tensors" --rounds "$rounds" --link "$link" --veth "$veth_client" \
        --json-out "$out/link-$link.json" "${client_args[@]}" &
    client_pid=$!
    pgroups+=("$client_pid")
    wait "$client_pid" || die "client failed on link $link"
    unset 'pgroups[-1]'
    records+=("$out/link-$link.json")
    # Sidecars start afresh on each link: their metrics and the tuner's memory are per link.
    sidecar_groups=("${pgroups[@]:${#triton_groups[@]}}")
    pgroups=("${sidecar_groups[@]}")
    stop_groups
    pgroups=("${triton_groups[@]}")
done

setup=$(
    "$python" - "$bloscar" "$baseline" "$baseline_link_mbps" "$rounds" "$links" "$modes" <<'PY'
import json, os, sys
bloscar, baseline, baseline_mbps, rounds, links, modes = sys.argv[1:]
print(json.dumps({
    "bloscar": bloscar, "baseline": baseline or None, "baseline_link_mbps": baseline_mbps,
    "rounds": int(rounds), "links": links.split(","), "modes": modes.split(","),
    "tbf": "rate R burst max(64 KiB, 5 ms at R) latency 20ms, on both veth ends' egress",
    "cpus": os.cpu_count(), "kernel": os.uname().release, "load_average": os.getloadavg(),
}))
PY
)
"$python" scripts/bench_link/report.py --json-out "$json_out" --setup "$setup" "${records[@]}"

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * host.bpf.c — host context, an object of its own beside the data plane (XDP/TC):
 *  - which process is behind a TCP connection: recorded once, in the process's own context, when
 *    it connects (fentry tcp_connect: the local port is chosen, the SYN not yet sent) or accepts
 *    (fexit inet_csk_accept), into bw_socks keyed by the connection's addresses and ports; the
 *    daemon joins the data plane's events to it. Nothing runs per packet.
 *  - connect() and sendmsg() to a blocked remote refused with EPERM (cgroup socket-address
 *    programs), so local programs fail at once instead of waiting on packets TC egress drops.
 * The watchlist tries are the data plane's (tries.bpf.h, handed over by the loader).
 */
#include <linux/bpf.h>
#include <asm/ptrace.h> /* struct pt_regs, for the kprobes (__TARGET_ARCH_* from the build) */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define BW_DEFINE_MAPS
#include "tries.bpf.h"
#include "kernel_types.bpf.h"

#define BW_AF_INET 2
#define BW_AF_INET6 10

/* What this kernel gives cgroup socket-address programs beyond bpf_get_current_uid_gid (the
 * loader's probe sets these before load; a helper the kernel refuses is then never called, and
 * the verifier never sees the branch): */
const volatile __u8 bw_sa_pid = 0;    /* bpf_get_current_pid_tgid and bpf_get_current_comm */
const volatile __u8 bw_sa_task = 0;   /* bpf_get_current_task and bpf_probe_read_kernel */
const volatile __u8 bw_sa_cgroup = 0; /* bpf_get_current_cgroup_id */

/* TCP connections -> the process that connected or accepted (struct bw_proc). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_SOCKS_DEFAULT);
	__type(key, struct bw_sock_key);
	__type(value, struct bw_proc);
} bw_socks SEC(".maps");

/* Host-context events to the daemon (struct bw_sock_event). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, BW_SOCK_EV_BYTES_DEFAULT);
} bw_sock_ev SEC(".maps");

/* Refusal on or off, connect events, the event budget (struct bw_host_cfg). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bw_host_cfg);
} bw_host_cfg SEC(".maps");

/* Outcome counters, per CPU (struct bw_host_counters). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bw_host_counters);
} bw_host_cnt SEC(".maps");

/* Processes' executables (struct bw_exe_key -> struct bw_exe), made by bw_note_exe. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BW_EXES_DEFAULT);
	__type(key, struct bw_exe_key);
	__type(value, struct bw_exe);
} bw_exes SEC(".maps");

/* Where an executable's path is put together (too big for the stack), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bw_exe);
} bw_exe_scratch SEC(".maps");

/* This CPU's event budget for the current second (struct bw_host_budget). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bw_host_budget);
} bw_host_bud SEC(".maps");

static __always_inline struct bw_host_counters *bw_hcnt(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&bw_host_cnt, &zero);
}

static __always_inline struct bw_host_cfg *bw_hcfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&bw_host_cfg, &zero);
}

static __always_inline int bw_is_v4_mapped16(const __u8 *a)
{
	__u64 lo;
	__u32 mid;

	__builtin_memcpy(&lo, a, 8);
	__builtin_memcpy(&mid, a + 8, 4);
	return lo == 0 && mid == bpf_htonl(0x0000ffff);
}

/* ---- the process ---------------------------------------------------------------------------- */

/* The current process's executable into bw_exes, once per process: the path of mm->exe_file,
 * walked from the file up through its parents and across mounts to the root of the process's
 * mount tree (a container's binary is named as the container sees it). Bounded: BW_EXE_DEPTH
 * steps, BW_EXE_PATH bytes, components cut at BW_EXE_NAME; an unfinished walk is kept without
 * BW_EXE_COMPLETE (the daemon then says nothing rather than half a path). */
static __always_inline void bw_note_exe(struct task_struct *t, const struct bw_proc *pr)
{
	struct bw_exe_key key = { .start_boottime_ns = pr->start_boottime_ns, .tgid = pr->tgid };
	__u32 zero = 0;
	struct bw_exe *e;
	struct file *f;
	struct dentry *d;
	struct mount *m;
	__u64 mnt_off = bpf_core_field_offset(struct mount, mnt);

	if (bpf_map_lookup_elem(&bw_exes, &key))
		return;
	e = bpf_map_lookup_elem(&bw_exe_scratch, &zero);
	f = BPF_CORE_READ(t, mm, exe_file);
	if (!e || !f)
		return;
	e->len = 0;
	e->flags = 0;
	d = BPF_CORE_READ(f, f_path.dentry);
	m = (struct mount *)((char *)BPF_CORE_READ(f, f_path.mnt) - mnt_off);
	for (__u32 i = 0; i < BW_EXE_DEPTH; i++) {
		struct dentry *parent = BPF_CORE_READ(d, d_parent);
		struct dentry *root = BPF_CORE_READ(m, mnt.mnt_root);
		const unsigned char *name;
		long n;

		if (d == root) {
			/* The top of this mount: on to where it is mounted, or done at the root. */
			struct mount *up = BPF_CORE_READ(m, mnt_parent);

			if (up == m) {
				e->flags = BW_EXE_COMPLETE;
				break;
			}
			d = BPF_CORE_READ(m, mnt_mountpoint);
			m = up;
			continue;
		}
		if (d == parent) { /* a file system's root outside any mount walked (memfd, ...) */
			e->flags = BW_EXE_COMPLETE;
			break;
		}
		/* The running length lives in the map value, not in a register: read back, it is a
		 * number the verifier knows nothing of but the mask, so every iteration's states are
		 * alike and prune (kept in a register, each length was a state of its own and the
		 * walk cost the verifier a million instructions). */
		__u32 off = e->len;

		if (off >= BW_EXE_PATH)
			break;
		name = BPF_CORE_READ(d, d_name.name);
		/* off < BW_EXE_PATH and BW_EXE_NAME bytes of slack: the read stays in path[]. */
		n = bpf_probe_read_kernel_str(&e->path[off & (BW_EXE_PATH - 1)], BW_EXE_NAME, name);
		if (n <= 0)
			break;
		e->len = off + n;
		d = parent;
	}
	if (e->len > BW_EXE_PATH) {
		e->len = BW_EXE_PATH;
		e->flags = 0; /* the last component ran past what is kept: not a whole path */
	}
	bpf_map_update_elem(&bw_exes, &key, e, BPF_NOEXIST);
}

/* From a tracing program: every helper is there. */
static __always_inline void bw_proc_of_task(struct bw_proc *pr, __u8 origin)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();

	pr->ts_ns = bpf_ktime_get_ns();
	pr->tgid = pid_tgid >> 32;
	pr->tid = (__u32)pid_tgid;
	pr->uid = (__u32)uid_gid;
	pr->gid = uid_gid >> 32;
	pr->ppid = BPF_CORE_READ(t, real_parent, tgid);
	pr->start_boottime_ns = BPF_CORE_READ(t, group_leader, start_boottime);
	pr->cgroup_id = bpf_get_current_cgroup_id();
	pr->origin = origin;
	bpf_get_current_comm(pr->comm, sizeof(pr->comm));
	bw_note_exe(t, pr);
}

/* From a cgroup socket-address program: what this kernel lets it ask (bw_sa_*). */
static __always_inline void bw_proc_of_sockaddr(struct bw_proc *pr)
{
	__u64 uid_gid = bpf_get_current_uid_gid();

	pr->ts_ns = bpf_ktime_get_ns();
	pr->uid = (__u32)uid_gid;
	pr->gid = uid_gid >> 32;
	pr->origin = BW_PROC_SOCKADDR;
	if (bw_sa_pid) {
		__u64 pid_tgid = bpf_get_current_pid_tgid();

		pr->tgid = pid_tgid >> 32;
		pr->tid = (__u32)pid_tgid;
		bpf_get_current_comm(pr->comm, sizeof(pr->comm));
	}
	if (bw_sa_task) {
		struct task_struct *t = (struct task_struct *)bpf_get_current_task();

		pr->ppid = BPF_CORE_READ(t, real_parent, tgid);
		pr->start_boottime_ns = BPF_CORE_READ(t, group_leader, start_boottime);
		if (bw_sa_pid)
			bw_note_exe(t, pr);
	}
	if (bw_sa_cgroup)
		pr->cgroup_id = bpf_get_current_cgroup_id();
}

/* ---- events --------------------------------------------------------------------------------- */

static __always_inline int bw_budget_left(struct bw_host_counters *c, const struct bw_host_cfg *cfg)
{
	__u32 zero = 0;
	struct bw_host_budget *b;
	__u64 now;

	if (!cfg->event_budget)
		return 1;
	b = bpf_map_lookup_elem(&bw_host_bud, &zero);
	if (!b)
		return 1;
	now = bpf_ktime_get_ns();
	if (now - b->window_ns >= 1000000000ULL) {
		b->window_ns = now;
		b->used = 0;
	}
	if (b->used >= cfg->event_budget) {
		c->sock_events_budget++;
		return 0;
	}
	b->used++;
	return 1;
}

static __always_inline void bw_sock_emit(struct bw_host_counters *c, const struct bw_host_cfg *cfg,
					 const struct bw_proc *pr, const struct bw_sock_key *k,
					 __u8 kind, __u8 hook, __u8 l4proto,
					 const struct bw_list_value *v)
{
	struct bw_sock_event *ev;

	if (!bw_budget_left(c, cfg))
		return;
	ev = bpf_ringbuf_reserve(&bw_sock_ev, sizeof(*ev), 0);
	if (!ev) {
		c->sock_events_lost++;
		return;
	}
	ev->ts_ns = pr->ts_ns;
	ev->proc = *pr;
	__builtin_memcpy(ev->laddr, k->laddr, 16);
	__builtin_memcpy(ev->raddr, k->raddr, 16);
	ev->lport = k->lport;
	ev->rport = k->rport;
	ev->list_id = v ? v->list_id : 0;
	ev->entry_ref = v ? v->entry_ref : 0;
	ev->list_action = v ? v->action : 0;
	ev->prefixlen = v ? v->prefixlen : 0;
	ev->kind = kind;
	ev->family = k->family;
	ev->l4proto = l4proto;
	ev->hook = hook;
	__builtin_memset(ev->_pad0, 0, sizeof(ev->_pad0));
	bpf_ringbuf_submit(ev, 0);
	c->sock_events++;
}

/* ---- attribution: connect and accept ------------------------------------------------------- */

/* The connection's key as the data plane's packets show it: an IPv6 socket's IPv4-mapped
 * connection sends IPv4 packets, so it is keyed as IPv4. -1 for other families. */
static __always_inline int bw_key_of_sock(struct sock *sk, struct bw_sock_key *k)
{
	unsigned short fam = BPF_CORE_READ(sk, __sk_common.skc_family);

	k->lport = bpf_htons(BPF_CORE_READ(sk, __sk_common.skc_num));
	k->rport = BPF_CORE_READ(sk, __sk_common.skc_dport);
	if (fam == BW_AF_INET6) {
		bpf_core_read(k->raddr, 16, &sk->__sk_common.skc_v6_daddr);
		if (!bw_is_v4_mapped16(k->raddr)) {
			bpf_core_read(k->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
			k->family = BW_FAMILY_V6;
			return 0;
		}
		__builtin_memset(k->raddr, 0, 16);
	} else if (fam != BW_AF_INET) {
		return -1;
	}
	__be32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	__be32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);

	__builtin_memcpy(k->raddr, &d, 4);
	__builtin_memcpy(k->laddr, &s, 4);
	k->family = BW_FAMILY_V4;
	return 0;
}

/* Records the current process for connection `k`. */
static __always_inline void bw_record_key(const struct bw_sock_key *kk, __u8 origin)
{
	struct bw_host_counters *c = bw_hcnt();
	struct bw_sock_key k = *kk;
	struct bw_proc pr = {};

	if (!c)
		return;
	bw_proc_of_task(&pr, origin);
	if (origin == BW_PROC_CONNECT)
		c->connects++;
	else
		c->accepts++;
	if (bpf_map_update_elem(&bw_socks, &k, &pr, BPF_ANY))
		c->record_errors++;
	if (origin == BW_PROC_CONNECT) {
		struct bw_host_cfg *cfg = bw_hcfg();

		if (cfg && (cfg->flags & BW_HOST_CONNECT_EVENTS))
			bw_sock_emit(c, cfg, &pr, &k, BW_SEV_CONNECT, BW_HOOK_TCP_CONNECT,
				     6 /* IPPROTO_TCP */, 0);
	}
}

static __always_inline void bw_record(struct sock *sk, __u8 origin)
{
	struct bw_sock_key k = {};

	if (sk && !bw_key_of_sock(sk, &k))
		bw_record_key(&k, origin);
}

SEC("fentry/tcp_connect")
int BPF_PROG(bw_tcp_connect, struct sock *sk)
{
	bw_record(sk, BW_PROC_CONNECT);
	return 0;
}

/* inet_csk_accept(sk, arg) since Linux 6.10; the loader picks this one or the next by the
 * argument count the kernel's BTF gives the function (fexit's return value follows the
 * arguments). */
SEC("fexit/inet_csk_accept")
int BPF_PROG(bw_accept, struct sock *sk, void *arg, struct sock *ret)
{
	bw_record(ret, BW_PROC_ACCEPT);
	return 0;
}

/* inet_csk_accept(sk, flags, err, kern) before Linux 6.10. */
SEC("fexit/inet_csk_accept")
int BPF_PROG(bw_accept_old, struct sock *sk, int flags, int *err, int kern, struct sock *ret)
{
	bw_record(ret, BW_PROC_ACCEPT);
	return 0;
}

/* The same through kprobes, for kernels that refuse tracing programs (BPF trampolines need BTF
 * and the architecture's support; some kernels keep them off). A kretprobe sees the return value
 * whatever the arguments, but runs at most maxactive instances at once (the kernel's default: a
 * few per CPU): accept() calls beyond those blocked at the same time go unrecorded. */
SEC("kprobe/tcp_connect")
int BPF_KPROBE(bw_kp_connect, struct sock *sk)
{
	bw_record(sk, BW_PROC_CONNECT);
	return 0;
}

SEC("kretprobe/inet_csk_accept")
int BPF_KRETPROBE(bw_kp_accept, struct sock *ret)
{
	bw_record(ret, BW_PROC_ACCEPT);
	return 0;
}

/* The last resort, for kernels with neither (some keep kprobes and BPF trampolines off): the
 * cgroup socket-operations program's TCP_CONNECT callback, which tcp_connect() calls in the
 * connecting process. Accepted connections go unrecorded: their callbacks run in softirq, where
 * the current task is not the one that accepts. Only for the cgroup it is attached to. */
SEC("sockops")
int bw_sockops(struct bpf_sock_ops *ops)
{
	struct bw_sock_key k = {};
	__u32 a[4];

	if (ops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	k.lport = bpf_htons((__u16)ops->local_port);            /* host order in the context */
	k.rport = bpf_htons((__u16)bpf_ntohl(ops->remote_port)); /* network order, upper half */
	if (ops->family == BW_AF_INET6) {
		/* One 4-byte load each (volatile): the context allows no wider one, and clang would
		 * merge neighbours into 8-byte loads the verifier refuses. */
		a[0] = *(volatile __u32 *)&ops->remote_ip6[0];
		a[1] = *(volatile __u32 *)&ops->remote_ip6[1];
		a[2] = *(volatile __u32 *)&ops->remote_ip6[2];
		a[3] = *(volatile __u32 *)&ops->remote_ip6[3];
		if (!bw_is_v4_mapped16((const __u8 *)a)) {
			__builtin_memcpy(k.raddr, a, 16);
			a[0] = *(volatile __u32 *)&ops->local_ip6[0];
			a[1] = *(volatile __u32 *)&ops->local_ip6[1];
			a[2] = *(volatile __u32 *)&ops->local_ip6[2];
			a[3] = *(volatile __u32 *)&ops->local_ip6[3];
			__builtin_memcpy(k.laddr, a, 16);
			k.family = BW_FAMILY_V6;
			bw_record_key(&k, BW_PROC_CONNECT);
			return 1;
		}
	} else if (ops->family != BW_AF_INET) {
		return 1;
	}
	a[0] = ops->remote_ip4;
	a[1] = ops->local_ip4;
	__builtin_memcpy(k.raddr, &a[0], 4);
	__builtin_memcpy(k.laddr, &a[1], 4);
	k.family = BW_FAMILY_V4;
	bw_record_key(&k, BW_PROC_CONNECT);
	return 1;
}

/* A connection's end: its record gets the time (bw_proc.closed_ns), so that the daemon never
 * gives a later connection on the same addresses and ports this one's process (one the hooks
 * did not record: outside the cgroup, past the kretprobe's instances, or events read before
 * accept() returned). The record stays for the events still in the ring. A raw tracepoint:
 * it needs neither BTF nor tracefs, and fires on state changes, not packets. */
SEC("raw_tracepoint/inet_sock_set_state")
int bw_sock_state(struct bpf_raw_tracepoint_args *ctx)
{
	struct sock *sk = (struct sock *)ctx->args[0];
	struct bw_sock_key k = {};
	struct bw_proc *rec;

	if ((int)ctx->args[2] != 7 /* TCP_CLOSE */)
		return 0;
	if (bpf_core_field_exists(sk->sk_protocol) &&
	    BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) != 6 /* IPPROTO_TCP */)
		return 0;
	if (bw_key_of_sock(sk, &k))
		return 0;
	k.lport = BPF_CORE_READ((struct inet_sock *)sk, inet_sport); /* skc_num is 0 by now */
	rec = bpf_map_lookup_elem(&bw_socks, &k);
	if (rec && !rec->closed_ns)
		rec->closed_ns = bpf_ktime_get_ns();
	return 0;
}

/* ---- refusal: connect() and sendmsg() to blocked remotes ------------------------------------ */

static __always_inline struct bw_list_value *bw_lookup_remote(const struct bw_sock_key *k)
{
	if (k->family == BW_FAMILY_V4) {
		struct bw_lpm_v4_key k4 = { .prefixlen = 32 };

		__builtin_memcpy(k4.addr, k->raddr, 4);
		return bpf_map_lookup_elem(&bw_watch_v4, &k4);
	}
	struct bw_lpm_v6_key k6 = { .prefixlen = 128 };

	__builtin_memcpy(k6.addr, k->raddr, 16);
	return bpf_map_lookup_elem(&bw_watch_v6, &k6);
}

/* 1 when the call must be refused. The effective action already holds the safelist's precedence
 * (a safelisted address is never BLOCK). */
static __always_inline int bw_refuse(const struct bw_sock_key *k, __u8 l4proto, __u8 hook)
{
	struct bw_host_cfg *cfg = bw_hcfg();
	struct bw_host_counters *c;
	struct bw_list_value *v;
	struct bw_proc pr = {};

	if (!cfg || !(cfg->flags & BW_HOST_REFUSE))
		return 0;
	v = bw_lookup_remote(k);
	if (!v || (v->action & (BW_ACTION_BLOCK | BW_ACTION_SAFELIST)) != BW_ACTION_BLOCK)
		return 0;
	__sync_fetch_and_add(&v->drops, 1);
	c = bw_hcnt();
	if (!c)
		return 1;
	if (hook == BW_HOOK_CONNECT)
		c->refused_connect++;
	else
		c->refused_sendmsg++;
	bw_proc_of_sockaddr(&pr);
	bw_sock_emit(c, cfg, &pr, k, BW_SEV_REFUSED, hook, l4proto, v);
	return 1;
}

static __always_inline int bw_sockaddr4(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct bw_sock_key k = {};
	__u32 raddr = ctx->user_ip4;
	struct bpf_sock *sk = ctx->sk;

	__builtin_memcpy(k.raddr, &raddr, 4);
	k.rport = (__be16)ctx->user_port; /* network order in the low 16 bits */
	k.family = BW_FAMILY_V4;
	if (sk) {
		__u32 laddr = sk->src_ip4;

		__builtin_memcpy(k.laddr, &laddr, 4);
		k.lport = bpf_htons((__u16)sk->src_port);
	}
	return bw_refuse(&k, (__u8)ctx->protocol, hook) ? 0 : 1;
}

static __always_inline int bw_sockaddr6(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct bw_sock_key k = {};
	struct bpf_sock *sk = ctx->sk;
	__u32 a[4];

	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
	k.rport = (__be16)ctx->user_port;
	if (bw_is_v4_mapped16((const __u8 *)a)) {
		/* An IPv6 socket reaching an IPv4 address: its packets, and its list, are IPv4. */
		__builtin_memcpy(k.raddr, &a[3], 4);
		k.family = BW_FAMILY_V4;
	} else {
		__builtin_memcpy(k.raddr, a, 16);
		k.family = BW_FAMILY_V6;
		if (sk) {
			a[0] = sk->src_ip6[0];
			a[1] = sk->src_ip6[1];
			a[2] = sk->src_ip6[2];
			a[3] = sk->src_ip6[3];
			__builtin_memcpy(k.laddr, a, 16);
		}
	}
	if (sk)
		k.lport = bpf_htons((__u16)sk->src_port);
	return bw_refuse(&k, (__u8)ctx->protocol, hook) ? 0 : 1;
}

SEC("cgroup/connect4")
int bw_connect4(struct bpf_sock_addr *ctx)
{
	return bw_sockaddr4(ctx, BW_HOOK_CONNECT);
}

SEC("cgroup/connect6")
int bw_connect6(struct bpf_sock_addr *ctx)
{
	return bw_sockaddr6(ctx, BW_HOOK_CONNECT);
}

SEC("cgroup/sendmsg4")
int bw_sendmsg4(struct bpf_sock_addr *ctx)
{
	return bw_sockaddr4(ctx, BW_HOOK_SENDMSG);
}

SEC("cgroup/sendmsg6")
int bw_sendmsg6(struct bpf_sock_addr *ctx)
{
	return bw_sockaddr6(ctx, BW_HOOK_SENDMSG);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

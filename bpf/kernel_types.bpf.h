/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kernel_types.bpf.h — the few kernel structures host.bpf.c reads, declared with only the fields
 * it reads and preserve_access_index: libbpf relocates every access to the running kernel's layout
 * from its BTF (CO-RE), so no vmlinux.h is generated from the build machine's kernel. Names and
 * field names must be the kernel's; order and the fields left out do not matter.
 */
#ifndef BANNERWATCH_KERNEL_TYPES_BPF_H
#define BANNERWATCH_KERNEL_TYPES_BPF_H

#include <linux/types.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
};

struct sock_common {
	union {
		struct {
			__be32 skc_daddr;
			__be32 skc_rcv_saddr;
		};
	};
	union {
		struct {
			__be16 skc_dport;
			__u16 skc_num; /* the local port, host order */
		};
	};
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol; /* a bit field before 5.6 (CO-RE reads either) */
};

/* The local port again, in network order: it outlives the close, which zeroes skc_num (the port
 * goes back to the bind table before the state changes to TCP_CLOSE). */
struct inet_sock {
	__be16 inet_sport;
};

struct qstr {
	const unsigned char *name;
};

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
};

struct vfsmount {
	struct dentry *mnt_root;
};

/* The kernel's private struct mount, around each vfsmount (container_of by mnt's offset). */
struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
};

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct file {
	struct path f_path;
};

struct mm_struct {
	struct file *exe_file;
};

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct mm_struct *mm;
	__u64 start_boottime; /* ns since boot, suspend included: /proc/PID/stat's starttime */
};

#pragma clang attribute pop

#endif /* BANNERWATCH_KERNEL_TYPES_BPF_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * variant.bpf.h — which object is being built (see "object variants" in bannerwatch_abi.h).
 *
 * Every unit of the data plane is compiled twice: as is (the full object), and with BW_CORE=1 for
 * kernels without bpf_loop, bpf_xdp_load_bytes, bpf_ktime_get_coarse_ns or pointer arguments to
 * global functions. BW_CORE removes code (what enum bw_feature names), picks the older clock
 * helper and hands the banner stage its arguments through a map (banner.bpf.h, bw_stage); maps,
 * programs and the decision's order are the same in both.
 */
#ifndef BANNERWATCH_VARIANT_BPF_H
#define BANNERWATCH_VARIANT_BPF_H

#ifndef BW_CORE
#define BW_CORE 0
#endif
/* bpf_loop: the first-payload line scan and the CONNECT parser run under it. */
#define BW_HAVE_LOOP (!BW_CORE)

#endif /* BANNERWATCH_VARIANT_BPF_H */

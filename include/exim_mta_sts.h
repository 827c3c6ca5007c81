/*
 * exim_mta_sts.h - the C interface of libexim_mta_sts.so, MTA-STS (RFC 8461) for Exim.
 *
 * Exim calls these functions through ${dlfunc}; they have the signature of Exim's
 * exim_dlfunc_t (local_scan.h):
 *
 *     int f(unsigned char **yield, int argc, unsigned char *argv[]);
 *
 * Conventions (SPEC §2):
 *  - Every routine answer, trouble included, is a string with status OK (0): "fail" for
 *    the mode, "0" for the host form. Exim fails open when an expansion fails in a
 *    router condition or an event_action, so the library never returns DEFER or FAIL.
 *  - Only a wrong number of arguments returns ERROR (3), with a message in *yield
 *    (Exim writes it to its panic log).
 *  - *yield points to memory owned by the library, valid until the next call in the
 *    same process. Exim copies an OK result at once.
 *  - DOMAIN and HOST are compared case-insensitively, without a trailing dot, in A-label
 *    form. An address literal or an invalid domain is not an MTA-STS domain: "none"
 *    (and "" for the host form).
 *  - The functions never unwind into the caller, never abort it, never write to
 *    stdout or stderr, and never change its signals, umask, cwd or syslog identity.
 *    Descriptors the library keeps open (its LMDB store) are close-on-exec.
 *    They are not meant to be called from several threads at once (Exim has one).
 */
#ifndef EXIM_MTA_STS_H
#define EXIM_MTA_STS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Exim's return codes (local_scan.h). */
#ifndef OK
#define OK 0
#endif
#ifndef ERROR
#define ERROR 3
#endif

/*
 * ${dlfunc{/usr/lib/exim4/libexim_mta_sts.so}{getmta}{DOMAIN}}
 *     "enforce", "testing" or "none": the MTA-STS mode in effect for DOMAIN;
 *     "dane": DNSSEC-authenticated TLSA records exist for its MX hosts, so DANE applies
 *     and takes precedence (RFC 8461 section 2): deliver with Exim's own DANE;
 *     "fail": the answer cannot safely be given now (temporary DNS failure with nothing
 *     cached, an unusable configuration file, or a failed policy fetch with
 *     fetch_failure = "fail"). Defer such mail.
 *
 * ${dlfunc{/usr/lib/exim4/libexim_mta_sts.so}{getmta}{DOMAIN}{HOST}}
 *     "" when HOST may be used for DOMAIN (it matches an mx pattern of the policy in
 *     effect, or no enforce/testing policy is in effect); "0" when it may not, and also
 *     when the library cannot decide (fail closed).
 */
int getmta(unsigned char **yield, int argc, unsigned char *argv[]);

/*
 * ${dlfunc{/usr/lib/exim4/libexim_mta_sts.so}{getmx}{DOMAIN}}
 *     The mx patterns of the policy in effect, colon-separated (an Exim list), in
 *     published order; "" when no policy is in effect.
 */
int getmx(unsigned char **yield, int argc, unsigned char *argv[]);

/*
 * ${dlfunc{/usr/lib/exim4/libexim_mta_sts.so}{mtasts_event}{$event_name}{$domain}{$host}
 *     {$host_address}{$sending_ip_address $sending_port}
 *     {$tls_out_cipher|$tls_out_certificate_verified}{$event_data}}
 *     From a transport's event_action (the macro MTA_STS_RECORD of exim-config/main.conf).
 *     smtp:ehlo, msg:host:defer and dane:fail count the session's TLS outcome for the
 *     TLS reports (RFC 8460) under the policy in effect; msg:host:defer under an enforce
 *     policy also makes the next getmta re-check the policy's _mta-sts id (RFC 8461
 *     section 5.1), at most once per fetch_backoff. Other events are ignored. Always ""
 *     with status OK; missing trailing arguments read as empty. Fewer than two or more
 *     than seven arguments: ERROR (Exim 4.96 miscounts a ${dlfunc} given eight).
 */
int mtasts_event(unsigned char **yield, int argc, unsigned char *argv[]);

#ifdef __cplusplus
}
#endif

#endif /* EXIM_MTA_STS_H */

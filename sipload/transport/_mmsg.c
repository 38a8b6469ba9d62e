/* sipload.transport._mmsg: many UDP datagrams per system call (Linux sendmmsg/recvmmsg).
 *
 * A small CPython extension built by hatch_build.py beside the mypyc hot path.
 * sipload.transport.batch is the only importer: it checks API and falls back to
 * plain sendto/recvmsg loops where this module is missing (a pure build), so keep
 * the two in step.  Everything here is non-blocking (MSG_DONTWAIT).
 *
 *   send(fd, packets, dests) -> (sent, failed, first_errno)
 *       packets: a sequence of bytes-like objects; dests: a sequence of the same
 *       length of (host, port) tuples (IPv4 or IPv6 literal).  Sends in order and
 *       stops at the first EAGAIN (the rest is neither sent nor failed: the
 *       caller counts it).  A datagram refused for another reason (EMSGSIZE,
 *       ECONNREFUSED from an ICMP error, ...) is counted as failed and skipped.
 *       first_errno: the first error seen (EAGAIN included), 0 for none.
 *   send_until(fd, packets, dests, start) -> (sent, errno)
 *       Sends packets[start:] to dests[start:] in order and stops at the first
 *       datagram the kernel did not take: `sent` datagrams from `start` on were
 *       taken, packets[start + sent] was not, and nothing after it was tried.
 *       errno says why, or is 0 when the kernel did not say: once a sendmmsg call
 *       has sent one datagram it returns the count and drops the next one's error
 *       (a pending ICMP error it consumed then sits in the error queue only).
 *       All sent: (len - start, 0).  The SIP UDP transport uses it: a refused
 *       datagram gets its own error handling there (queued ICMP errors reported,
 *       the datagram re-sent).
 *   recv(fd, limit, bufsize, want_stamps) -> (datagrams, errno)
 *       Reads until EAGAIN or `limit` datagrams: a list of (data, (host, port),
 *       stamp) where stamp is the kernel's receive time (SO_TIMESTAMPNS, if the
 *       socket has it enabled and want_stamps) moved onto CLOCK_MONOTONIC with an
 *       offset measured once per call, else CLOCK_MONOTONIC when the datagram was
 *       read.  A datagram longer than bufsize is cut to bufsize.  errno: the error
 *       that ended the read when it was not EAGAIN (e.g. a queued ICMP error),
 *       else 0; the datagrams read before it are returned.
 *   timer_set(fd, when) -> None
 *       Arms the timerfd fd for the absolute CLOCK_MONOTONIC time `when` (seconds,
 *       a float); `when` <= 0 disarms it.  sipload.transport.hrtimer calls it once
 *       per call start: a C call instead of ctypes' (about 9% of a worker's CPU at
 *       load went to ctypes' argument conversion).  OSError on failure.
 *   timer_ack(fd) -> int
 *       Reads the timerfd's expiration count (0 when it had not expired: EAGAIN,
 *       as when it was re-armed after expiring).  OSError on another failure.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define API_VERSION 3
#define CHUNK 256 /* messages per system call (the kernel takes at most UIO_MAXIOV=1024) */

typedef union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} anyaddr;

static double now_clock(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* (host, port) -> sockaddr; returns its length, or 0 with a Python error set. */
static socklen_t to_sockaddr(PyObject *dest, anyaddr *out) {
    if (!PyTuple_Check(dest) || PyTuple_GET_SIZE(dest) < 2) {
        PyErr_SetString(PyExc_TypeError, "a destination is a (host, port) tuple");
        return 0;
    }
    const char *host = PyUnicode_AsUTF8(PyTuple_GET_ITEM(dest, 0));
    if (host == NULL) return 0;
    long port = PyLong_AsLong(PyTuple_GET_ITEM(dest, 1));
    if (port == -1 && PyErr_Occurred()) return 0;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_OverflowError, "port must be 0-65535");
        return 0;
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, &out->in4.sin_addr) == 1) {
        out->in4.sin_family = AF_INET;
        out->in4.sin_port = htons((uint16_t)port);
        return sizeof(out->in4);
    }
    if (inet_pton(AF_INET6, host, &out->in6.sin6_addr) == 1) {
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = htons((uint16_t)port);
        return sizeof(out->in6);
    }
    PyErr_Format(PyExc_ValueError, "not an IP address literal: %s", host);
    return 0;
}

static PyObject *mmsg_send(PyObject *self, PyObject *args) {
    int fd;
    PyObject *packets_in, *dests_in;
    if (!PyArg_ParseTuple(args, "iOO", &fd, &packets_in, &dests_in)) return NULL;
    PyObject *packets = PySequence_Fast(packets_in, "packets must be a sequence");
    if (packets == NULL) return NULL;
    PyObject *dests = PySequence_Fast(dests_in, "dests must be a sequence");
    if (dests == NULL) {
        Py_DECREF(packets);
        return NULL;
    }
    Py_ssize_t total = PySequence_Fast_GET_SIZE(packets);
    if (PySequence_Fast_GET_SIZE(dests) != total) {
        Py_DECREF(packets);
        Py_DECREF(dests);
        PyErr_SetString(PyExc_ValueError, "packets and dests differ in length");
        return NULL;
    }
    struct mmsghdr msgs[CHUNK];
    struct iovec iov[CHUNK];
    anyaddr addrs[CHUNK];
    Py_buffer views[CHUNK];
    PyObject *last_dest = NULL;
    anyaddr last_addr;
    socklen_t last_len = 0;
    Py_ssize_t sent = 0, failed = 0, pos = 0;
    int first_errno = 0, stop = 0;
    PyObject **pitems = PySequence_Fast_ITEMS(packets);
    PyObject **ditems = PySequence_Fast_ITEMS(dests);
    while (pos < total && !stop) {
        Py_ssize_t n = total - pos < CHUNK ? total - pos : CHUNK;
        Py_ssize_t held = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *dest = ditems[pos + i];
            if (dest != last_dest) {
                int same = 0;
                if (last_dest != NULL) {
                    same = PyObject_RichCompareBool(dest, last_dest, Py_EQ);
                    if (same < 0) goto fail;
                }
                if (!same) {
                    last_len = to_sockaddr(dest, &last_addr);
                    if (last_len == 0) goto fail;
                }
                last_dest = dest;
            }
            if (PyObject_GetBuffer(pitems[pos + i], &views[i], PyBUF_SIMPLE) < 0) goto fail;
            held++;
            addrs[i] = last_addr;
            iov[i].iov_base = views[i].buf;
            iov[i].iov_len = (size_t)views[i].len;
            memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
            msgs[i].msg_hdr.msg_name = &addrs[i];
            msgs[i].msg_hdr.msg_namelen = last_len;
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_len = 0;
        }
        Py_ssize_t done = 0;
        Py_BEGIN_ALLOW_THREADS
        while (done < n) {
            int r = sendmmsg(fd, msgs + done, (unsigned int)(n - done), MSG_DONTWAIT);
            if (r > 0) {
                done += r;
                sent += r;
                continue;
            }
            if (r < 0 && errno == EINTR) continue;
            int err = r < 0 ? errno : EAGAIN;
            if (first_errno == 0) first_errno = err;
            if (err == EAGAIN || err == EWOULDBLOCK) {
                stop = 1;
                break;
            }
            failed++; /* this datagram is refused: skip it, send the rest */
            done++;
        }
        Py_END_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < held; i++) PyBuffer_Release(&views[i]);
        pos += n;
        continue;
    fail:
        for (Py_ssize_t i = 0; i < held; i++) PyBuffer_Release(&views[i]);
        Py_DECREF(packets);
        Py_DECREF(dests);
        return NULL;
    }
    Py_DECREF(packets);
    Py_DECREF(dests);
    return Py_BuildValue("nni", sent, failed, first_errno);
}

static PyObject *mmsg_send_until(PyObject *self, PyObject *args) {
    int fd;
    Py_ssize_t start;
    PyObject *packets_in, *dests_in;
    if (!PyArg_ParseTuple(args, "iOOn", &fd, &packets_in, &dests_in, &start)) return NULL;
    PyObject *packets = PySequence_Fast(packets_in, "packets must be a sequence");
    if (packets == NULL) return NULL;
    PyObject *dests = PySequence_Fast(dests_in, "dests must be a sequence");
    if (dests == NULL) {
        Py_DECREF(packets);
        return NULL;
    }
    Py_ssize_t total = PySequence_Fast_GET_SIZE(packets);
    if (PySequence_Fast_GET_SIZE(dests) != total || start < 0 || start > total) {
        Py_DECREF(packets);
        Py_DECREF(dests);
        PyErr_SetString(PyExc_ValueError,
                        "packets and dests differ in length, or start is out of range");
        return NULL;
    }
    struct mmsghdr msgs[CHUNK];
    struct iovec iov[CHUNK];
    anyaddr addrs[CHUNK];
    Py_buffer views[CHUNK];
    PyObject *last_dest = NULL;
    anyaddr last_addr;
    socklen_t last_len = 0;
    Py_ssize_t sent = 0, pos = start;
    int err = 0;
    PyObject **pitems = PySequence_Fast_ITEMS(packets);
    PyObject **ditems = PySequence_Fast_ITEMS(dests);
    while (pos < total && err == 0) {
        Py_ssize_t n = total - pos < CHUNK ? total - pos : CHUNK;
        Py_ssize_t held = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *dest = ditems[pos + i];
            if (dest != last_dest) {
                int same = 0;
                if (last_dest != NULL) {
                    same = PyObject_RichCompareBool(dest, last_dest, Py_EQ);
                    if (same < 0) goto fail;
                }
                if (!same) {
                    last_len = to_sockaddr(dest, &last_addr);
                    if (last_len == 0) goto fail;
                }
                last_dest = dest;
            }
            if (PyObject_GetBuffer(pitems[pos + i], &views[i], PyBUF_SIMPLE) < 0) goto fail;
            held++;
            addrs[i] = last_addr;
            iov[i].iov_base = views[i].buf;
            iov[i].iov_len = (size_t)views[i].len;
            memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
            msgs[i].msg_hdr.msg_name = &addrs[i];
            msgs[i].msg_hdr.msg_namelen = last_len;
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_len = 0;
        }
        Py_ssize_t done = 0;
        int early = 0;
        Py_BEGIN_ALLOW_THREADS
        for (;;) {
            int r = sendmmsg(fd, msgs, (unsigned int)n, MSG_DONTWAIT);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                err = r < 0 ? errno : EAGAIN;
            } else {
                done = r;
                /* fewer taken: the kernel dropped the reason (it keeps only the count
                 * once one went), and a pending ICMP error it consumed is in the error
                 * queue only: stop here and let the caller look */
                early = r < n;
            }
            break;
        }
        Py_END_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < held; i++) PyBuffer_Release(&views[i]);
        sent += done;
        pos += n;
        if (early) break;
        continue;
    fail:
        for (Py_ssize_t i = 0; i < held; i++) PyBuffer_Release(&views[i]);
        Py_DECREF(packets);
        Py_DECREF(dests);
        return NULL;
    }
    Py_DECREF(packets);
    Py_DECREF(dests);
    return Py_BuildValue("ni", sent, err);
}

/* Receive buffers, grown on demand and kept (the GIL is held while they are used).
 * Plain malloc, not PyMem: a scratch area of chunk x bufsize bytes (4 MiB for SIP's
 * 64 slots of 64 KiB) of which only the pages a datagram was written to become
 * resident; through PyMem, tracemalloc would count all of it as Python heap. */
static char *rbuf = NULL;
static size_t rbuf_size = 0;

static PyObject *addr_tuple(const anyaddr *a) {
    char host[INET6_ADDRSTRLEN];
    int port;
    if (a->sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->in4.sin_addr, host, sizeof(host));
        port = ntohs(a->in4.sin_port);
    } else if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->in6.sin6_addr, host, sizeof(host));
        port = ntohs(a->in6.sin6_port);
    } else {
        host[0] = '\0';
        port = 0;
    }
    return Py_BuildValue("(si)", host, port);
}

static int same_addr(const anyaddr *a, const anyaddr *b) {
    if (a->sa.sa_family != b->sa.sa_family) return 0;
    if (a->sa.sa_family == AF_INET)
        return a->in4.sin_port == b->in4.sin_port &&
               a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
    if (a->sa.sa_family == AF_INET6)
        return a->in6.sin6_port == b->in6.sin6_port &&
               memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof(a->in6.sin6_addr)) == 0;
    return 0;
}

#define CMSG_ROOM 64

static PyObject *mmsg_recv(PyObject *self, PyObject *args) {
    int fd, want_stamps = 1;
    Py_ssize_t limit, bufsize;
    if (!PyArg_ParseTuple(args, "inn|p", &fd, &limit, &bufsize, &want_stamps)) return NULL;
    if (limit < 1 || bufsize < 1 || bufsize > 1 << 20) {
        PyErr_SetString(PyExc_ValueError, "limit must be >= 1 and bufsize 1..1 MiB");
        return NULL;
    }
    Py_ssize_t chunk = limit < CHUNK ? limit : CHUNK;
    size_t need = (size_t)chunk * (size_t)bufsize;
    if (rbuf_size < need) {
        char *grown = realloc(rbuf, need);
        if (grown == NULL) return PyErr_NoMemory();
        rbuf = grown;
        rbuf_size = need;
    }
    struct mmsghdr msgs[CHUNK];
    struct iovec iov[CHUNK];
    anyaddr addrs[CHUNK];
    char cmsgs[CHUNK][CMSG_ROOM];
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    double offset = now_clock(CLOCK_REALTIME) - now_clock(CLOCK_MONOTONIC);
    PyObject *last_tuple = NULL;
    anyaddr last_addr;
    Py_ssize_t got = 0;
    int error = 0;
    while (got < limit) {
        Py_ssize_t n = limit - got < chunk ? limit - got : chunk;
        for (Py_ssize_t i = 0; i < n; i++) {
            iov[i].iov_base = rbuf + (size_t)i * (size_t)bufsize;
            iov[i].iov_len = (size_t)bufsize;
            memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
            msgs[i].msg_hdr.msg_name = &addrs[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(addrs[i]);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = want_stamps ? cmsgs[i] : NULL;
            msgs[i].msg_hdr.msg_controllen = want_stamps ? CMSG_ROOM : 0;
        }
        int r = recvmmsg(fd, msgs, (unsigned int)n, MSG_DONTWAIT, NULL);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) error = errno;
            break;
        }
        double mono = now_clock(CLOCK_MONOTONIC);
        for (int i = 0; i < r; i++) {
            double stamp = mono;
            if (want_stamps) {
                struct cmsghdr *c;
                for (c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c != NULL;
                     c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
                    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
                        c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
                        struct timespec ts;
                        memcpy(&ts, CMSG_DATA(c), sizeof(ts));
                        stamp = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 - offset;
                    }
                }
            }
            if (last_tuple == NULL || !same_addr(&addrs[i], &last_addr)) {
                Py_XDECREF(last_tuple);
                last_tuple = addr_tuple(&addrs[i]);
                if (last_tuple == NULL) goto fail;
                last_addr = addrs[i];
            }
            size_t len = msgs[i].msg_len < (unsigned int)bufsize ? msgs[i].msg_len
                                                                  : (size_t)bufsize;
            PyObject *data = PyBytes_FromStringAndSize(iov[i].iov_base, (Py_ssize_t)len);
            if (data == NULL) goto fail;
            PyObject *st = PyFloat_FromDouble(stamp);
            if (st == NULL) {
                Py_DECREF(data);
                goto fail;
            }
            Py_INCREF(last_tuple);
            PyObject *item = PyTuple_New(3);
            if (item == NULL) {
                Py_DECREF(data);
                Py_DECREF(st);
                Py_DECREF(last_tuple);
                goto fail;
            }
            PyTuple_SET_ITEM(item, 0, data);
            PyTuple_SET_ITEM(item, 1, last_tuple);
            PyTuple_SET_ITEM(item, 2, st);
            int bad = PyList_Append(out, item);
            Py_DECREF(item);
            if (bad) goto fail;
        }
        got += r;
        if (r < n) break; /* the queue is empty now */
    }
    Py_XDECREF(last_tuple);
    return Py_BuildValue("(Ni)", out, error);
fail:
    Py_XDECREF(last_tuple);
    Py_DECREF(out);
    return NULL;
}

/* A file descriptor argument; -1 with a Python error set when it is not one. */
static int to_fd(PyObject *arg) {
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) return -1;
    if (fd < 0 || fd > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "not a file descriptor");
        return -1;
    }
    return (int)fd;
}

static PyObject *mmsg_timer_set(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "timer_set(fd, when) takes 2 arguments");
        return NULL;
    }
    int fd = to_fd(args[0]);
    if (fd < 0) return NULL;
    double when = PyFloat_AsDouble(args[1]);
    if (when == -1.0 && PyErr_Occurred()) return NULL;
    struct itimerspec spec;
    memset(&spec, 0, sizeof(spec));
    if (when > 0.0) {
        double whole;
        double frac = modf(when, &whole);
        spec.it_value.tv_sec = (time_t)whole;
        spec.it_value.tv_nsec = (long)(frac * 1e9);
        if (spec.it_value.tv_nsec > 999999999L) spec.it_value.tv_nsec = 999999999L;
        if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) {
            spec.it_value.tv_nsec = 1; /* all zero would disarm: 1 ns is long past */
        }
    }
    if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *mmsg_timer_ack(PyObject *self, PyObject *arg) {
    int fd = to_fd(arg);
    if (fd < 0) return NULL;
    uint64_t expirations = 0;
    ssize_t got;
    do {
        got = read(fd, &expirations, sizeof(expirations));
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return PyLong_FromLong(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)expirations);
}

static PyMethodDef methods[] = {
    {"send", mmsg_send, METH_VARARGS,
     "send(fd, packets, dests) -> (sent, failed, first_errno): sendmmsg in order, "
     "stopping at EAGAIN."},
    {"send_until", mmsg_send_until, METH_VARARGS,
     "send_until(fd, packets, dests, start) -> (sent, errno): sendmmsg of packets[start:] "
     "in order, stopping at the first refused datagram (EAGAIN included)."},
    {"recv", mmsg_recv, METH_VARARGS,
     "recv(fd, limit, bufsize, want_stamps=True) -> ([(data, (host, port), stamp)], errno): "
     "recvmmsg until EAGAIN or limit; stamps on CLOCK_MONOTONIC."},
    {"timer_set", (PyCFunction)(void (*)(void))mmsg_timer_set, METH_FASTCALL,
     "timer_set(fd, when) -> None: arm a timerfd for absolute CLOCK_MONOTONIC seconds "
     "(<= 0 disarms)."},
    {"timer_ack", mmsg_timer_ack, METH_O,
     "timer_ack(fd) -> int: a timerfd's expirations (0 when none: EAGAIN)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sipload.transport._mmsg",
    "Batched UDP socket calls (sendmmsg/recvmmsg) and timerfd arming; see "
    "sipload.transport.batch and sipload.transport.hrtimer.", -1, methods,
};

PyMODINIT_FUNC PyInit__mmsg(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "API", API_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

//! The media socket in batches: one `recvmmsg` reads up to [`BATCH`] datagrams, and what the
//! engine sends is queued and written with one `sendmmsg` per [`BATCH`].
//!
//! At the packet rates of a MediaServer the system calls cost as much CPU as SRTP and
//! str0m together (one `recvfrom` and one `sendto` per relayed packet); batching pays the
//! kernel entry once per batch. Sends are queued only within one turn of the engine loop:
//! the engine flushes before it waits again, so batching adds no timer delay.
//!
//! Linux and the BSDs have both calls; nix wraps them without `unsafe` in this crate.

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, RecvMsg, SockaddrStorage, recvmmsg, sendmmsg,
    setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;
use std::io::{self, ErrorKind, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram read (str0m's MTU is ~1150; leave room). Longer ones are dropped.
pub const RECEIVE_BUFFER: usize = 2048;

/// The receiving half: buffers for one batch and what the last read put in them.
pub struct BatchReceiver {
    socket: Arc<UdpSocket>,
    buffers: Vec<Vec<u8>>,
    /// (source, length, kernel arrival time) of each datagram of the last batch, in
    /// `buffers` order.
    received: Vec<(SocketAddr, usize, Option<TimeSpec>)>,
    /// When the last batch was read, on both clocks (kernel timestamps are wall-clock).
    read_at: (Instant, SystemTime),
    /// The kernel stamps each datagram with its arrival (SO_TIMESTAMPNS).
    timestamps: bool,
    /// Datagrams dropped because they did not fit `RECEIVE_BUFFER`.
    pub truncated: u64,
}

impl BatchReceiver {
    pub fn new(socket: Arc<UdpSocket>) -> Self {
        let timestamps = setsockopt(&*socket, sockopt::ReceiveTimestampns, &true)
            .inspect_err(|e| tracing::debug!(error = %e, "no kernel receive timestamps"))
            .is_ok();
        Self {
            socket,
            buffers: vec![vec![0; RECEIVE_BUFFER]; BATCH],
            received: Vec::with_capacity(BATCH),
            read_at: (Instant::now(), SystemTime::now()),
            timestamps,
            truncated: 0,
        }
    }

    /// Waits until the socket has something to read.
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads what is waiting, up to one batch, without blocking; `WouldBlock` when nothing
    /// is. Afterwards [`Self::datagram`] gives each datagram read.
    pub fn read(&mut self) -> io::Result<usize> {
        self.received.clear();
        let Self {
            socket,
            buffers,
            received,
            timestamps,
            truncated,
            ..
        } = self;
        let fd = socket.as_raw_fd();
        socket.try_io(Interest::READABLE, || {
            // The headers hold raw pointers (not `Send`), so they live for one call only.
            let control = timestamps.then(|| nix::cmsg_space!(TimeSpec));
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(buffers.len(), control);
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|buffer| [IoSliceMut::new(buffer)])
                .collect();
            let results = recvmmsg(
                fd,
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            for message in results {
                let message: RecvMsg<'_, '_, SockaddrStorage> = message;
                if message.flags.contains(MsgFlags::MSG_TRUNC) {
                    *truncated += 1;
                    // Keep the slot so indices stay aligned; an empty datagram is ignored.
                    received.push((unspecified(), 0, None));
                    continue;
                }
                let source = message
                    .address
                    .as_ref()
                    .and_then(to_std)
                    .unwrap_or_else(unspecified);
                let arrival = message.cmsgs().ok().and_then(|mut cmsgs| {
                    cmsgs.find_map(|cmsg| match cmsg {
                        ControlMessageOwned::ScmTimestampns(at) => Some(at),
                        _ => None,
                    })
                });
                received.push((source, message.bytes, arrival));
            }
            Ok(())
        })?;
        self.read_at = (Instant::now(), SystemTime::now());
        Ok(self.received.len())
    }

    /// Number of datagrams the last [`Self::read`] returned.
    pub fn len(&self) -> usize {
        self.received.len()
    }

    /// The last [`Self::read`] returned nothing.
    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    /// The `index`-th datagram of the last read: its source and bytes (empty when it was
    /// dropped as too long).
    pub fn datagram(&self, index: usize) -> (SocketAddr, &[u8]) {
        let (source, length, _) = self.received[index];
        (source, &self.buffers[index][..length])
    }

    /// When the `index`-th datagram of the last read reached the socket: the kernel's
    /// timestamp where there is one, else the time of the read.
    pub fn arrival(&self, index: usize) -> Instant {
        let (read_instant, read_wall) = self.read_at;
        let Some(stamp) = self.received[index].2 else {
            return read_instant;
        };
        let stamped = SystemTime::UNIX_EPOCH + Duration::from(stamp);
        let age = read_wall.duration_since(stamped).unwrap_or_default();
        read_instant.checked_sub(age).unwrap_or(read_instant)
    }
}

/// The sending half: datagrams queued since the last flush.
pub struct BatchSender {
    socket: Arc<UdpSocket>,
    queue: Vec<Vec<u8>>,
    destinations: Vec<Option<SockaddrStorage>>,
    /// Datagrams the socket refused (buffer full, unreachable, …) since it was created.
    pub errors: u64,
}

/// How one flush went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub sent: usize,
    pub failed: usize,
}

impl BatchSender {
    pub fn new(socket: Arc<UdpSocket>) -> Self {
        Self {
            socket,
            queue: Vec::with_capacity(BATCH),
            destinations: Vec::with_capacity(BATCH),
            errors: 0,
        }
    }

    /// Queues one datagram; writes the queue when it holds a whole batch.
    pub fn push(&mut self, destination: SocketAddr, contents: Vec<u8>) {
        self.queue.push(contents);
        self.destinations
            .push(Some(SockaddrStorage::from(destination)));
        if self.queue.len() >= BATCH {
            self.flush();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Writes everything queued. A datagram the kernel refuses is dropped and counted (UDP:
    /// the peer's jitter buffer or NACK copes); a full socket buffer drops the rest of the
    /// batch rather than blocking the engine.
    pub fn flush(&mut self) -> Flushed {
        let mut flushed = Flushed::default();
        let fd = self.socket.as_raw_fd();
        // The headers hold raw pointers (not `Send`), so they live for one flush only.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(self.queue.len(), None);
        let mut start = 0;
        while start < self.queue.len() {
            let slices: Vec<[IoSlice<'_>; 1]> = self.queue[start..]
                .iter()
                .map(|datagram| [IoSlice::new(datagram)])
                .collect();
            let result = sendmmsg(
                fd,
                &mut headers,
                slices.iter(),
                &self.destinations[start..],
                [],
                MsgFlags::MSG_DONTWAIT,
            )
            .map(|results| results.count());
            match result {
                Ok(0) => {
                    flushed.failed += self.queue.len() - start;
                    break;
                }
                Ok(sent) => {
                    flushed.sent += sent;
                    start += sent;
                }
                Err(e) if io::Error::from(e).kind() == ErrorKind::WouldBlock => {
                    flushed.failed += self.queue.len() - start;
                    break;
                }
                Err(e) => {
                    // The first datagram left was refused (ICMP error of a gone client,
                    // unreachable address): drop it and go on with the others.
                    tracing::debug!(error = %e, destination = ?self.destinations[start], "UDP send failed");
                    flushed.failed += 1;
                    start += 1;
                }
            }
        }
        self.errors += flushed.failed as u64;
        self.queue.clear();
        self.destinations.clear();
        flushed
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

fn to_std(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn bound() -> Arc<UdpSocket> {
        Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap())
    }

    #[tokio::test]
    async fn a_batch_goes_out_in_order_and_comes_back_with_sources() {
        let (a, b) = (bound().await, bound().await);
        let b_addr = b.local_addr().unwrap();
        let mut sender = BatchSender::new(a.clone());
        // More than one batch: the first BATCH go out on push, the rest on flush.
        let count = BATCH + 5;
        for i in 0..count {
            sender.push(b_addr, format!("datagram {i}").into_bytes());
        }
        assert_eq!(sender.queue.len(), 5);
        assert_eq!(sender.flush(), Flushed { sent: 5, failed: 0 });
        assert!(sender.is_empty());

        let mut receiver = BatchReceiver::new(b);
        assert!(receiver.timestamps, "Linux stamps datagrams on arrival");
        let mut seen = Vec::new();
        while seen.len() < count {
            tokio::time::timeout(Duration::from_secs(5), receiver.readable())
                .await
                .expect("datagrams arrive")
                .unwrap();
            match receiver.read() {
                Ok(n) => {
                    assert!(n <= BATCH);
                    for index in 0..receiver.len() {
                        let (source, bytes) = receiver.datagram(index);
                        assert_eq!(source, a.local_addr().unwrap());
                        // The kernel's arrival stamp: before now, and recent.
                        let arrival = receiver.arrival(index);
                        assert!(arrival <= Instant::now());
                        assert!(arrival.elapsed() < Duration::from_secs(5));
                        seen.push(String::from_utf8(bytes.to_vec()).unwrap());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
        let expected: Vec<String> = (0..count).map(|i| format!("datagram {i}")).collect();
        assert_eq!(seen, expected);
        // Nothing more waiting.
        assert_eq!(receiver.read().unwrap_err().kind(), ErrorKind::WouldBlock);
    }

    #[tokio::test]
    async fn an_oversized_datagram_is_dropped_and_counted() {
        let (a, b) = (bound().await, bound().await);
        let b_addr = b.local_addr().unwrap();
        let mut sender = BatchSender::new(a);
        sender.push(b_addr, vec![1; RECEIVE_BUFFER + 100]);
        sender.push(b_addr, vec![2; 10]);
        assert_eq!(sender.flush().sent, 2);
        let mut receiver = BatchReceiver::new(b);
        let mut lengths = Vec::new();
        while lengths.len() < 2 {
            receiver.readable().await.unwrap();
            if receiver.read().is_ok() {
                for index in 0..receiver.len() {
                    lengths.push(receiver.datagram(index).1.len());
                }
            }
        }
        assert_eq!(lengths, vec![0, 10]);
        assert_eq!(receiver.truncated, 1);
    }

    #[tokio::test]
    async fn an_unreachable_destination_loses_only_its_own_datagram() {
        let (a, b) = (bound().await, bound().await);
        let b_addr = b.local_addr().unwrap();
        let mut sender = BatchSender::new(a);
        // An IPv6 destination on an IPv4 socket: the kernel refuses this one datagram.
        sender.push("[::1]:9".parse().unwrap(), b"lost".to_vec());
        sender.push(b_addr, b"kept".to_vec());
        assert_eq!(sender.flush(), Flushed { sent: 1, failed: 1 });
        assert_eq!(sender.errors, 1);
        let mut receiver = BatchReceiver::new(b);
        loop {
            receiver.readable().await.unwrap();
            if receiver.read().is_ok() {
                break;
            }
        }
        assert_eq!(receiver.datagram(0).1, b"kept");
    }
}

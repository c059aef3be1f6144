//! The UDP fast path: a receive loop that answers each query on the task that received it and
//! sends the response straight to the socket. hickory-server's own UDP path spawns a task per
//! query and passes each response through a channel to a sender task: two task hand-offs per
//! query, which cost more than the zone lookup. TCP stays with hickory-server.
//!
//! Packets are treated as hickory-server treats them: an unreadable header is dropped, a
//! readable header with an unreadable body gets FORMERR, a response (QR set) is ignored. A
//! query that cannot be answered at once (it is forwarded upstream) continues on a task of its
//! own, so the loop never waits for the network.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use hickory_proto::op::{Header, MessageType, ResponseCode};
use hickory_proto::rr::Record as WireRecord;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_proto::xfer::Protocol;
use hickory_server::authority::{MessageRequest, MessageResponse};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tokio::net::UdpSocket;

use crate::server::DnsHandler;

/// Largest datagram read (and the response limit without EDNS, as hickory-server has it).
const MAX_DATAGRAM: usize = 4096;

/// Answers every query arriving on `socket` until reading from it fails.
pub(crate) async fn serve_udp(socket: Arc<UdpSocket>, handler: Arc<DnsHandler>) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, src) = socket.recv_from(&mut buf).await?;
        let bytes = &buf[..len];
        let message = match MessageRequest::from_bytes(bytes) {
            Ok(message) => message,
            Err(_) => {
                formerr(&socket, bytes, src).await;
                continue;
            }
        };
        if message.message_type() == MessageType::Response {
            // Never answer responses: no reflection.
            continue;
        }
        let request = Request::new(message, src, Protocol::Udp);
        let responder = Responder {
            socket: Arc::clone(&socket),
            dst: src,
        };
        let handler = Arc::clone(&handler);
        let mut answer: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            handler.handle_request(&request, responder).await;
        });
        // Answered from the zone: done now. Forwarded: finish on a task of its own.
        let mut context = Context::from_waker(Waker::noop());
        if answer.as_mut().poll(&mut context) == Poll::Pending {
            tokio::spawn(answer);
        }
    }
}

/// A FORMERR for a packet whose header is readable and is a query; nothing otherwise.
async fn formerr(socket: &UdpSocket, bytes: &[u8], src: SocketAddr) {
    let Ok(header) = Header::read(&mut BinDecoder::new(bytes)) else {
        return;
    };
    if header.message_type() == MessageType::Response {
        return;
    }
    let mut response = Header::response_from_request(&header);
    response.set_response_code(ResponseCode::FormErr);
    if let Ok(encoded) = response.to_bytes() {
        let _ = socket.send_to(&encoded, src).await;
    }
}

/// Sends one response straight to the client.
#[derive(Clone)]
struct Responder {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for Responder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a WireRecord> + Send + 'a,
            impl Iterator<Item = &'a WireRecord> + Send + 'a,
            impl Iterator<Item = &'a WireRecord> + Send + 'a,
            impl Iterator<Item = &'a WireRecord> + Send + 'a,
        >,
    ) -> io::Result<ResponseInfo> {
        let id = response.header().id();
        // As hickory-server: the client's EDNS size, else 4096 (the handler itself keeps
        // answers without EDNS within 512 bytes).
        let max_size = response
            .get_edns()
            .as_ref()
            .map_or(MAX_DATAGRAM as u16, |edns| edns.max_payload());
        let mut buffer = Vec::with_capacity(512);
        let encoded = {
            let mut encoder = BinEncoder::new(&mut buffer);
            encoder.set_max_size(max_size);
            response.destructive_emit(&mut encoder)
        };
        let info = match encoded {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, "encoding a DNS response failed; sending SERVFAIL");
                buffer.clear();
                let mut header = Header::new();
                header.set_id(id);
                header.set_message_type(MessageType::Response);
                header.set_response_code(ResponseCode::ServFail);
                buffer = header.to_bytes().map_err(io::Error::other)?;
                header.into()
            }
        };
        self.socket.send_to(&buffer, self.dst).await?;
        Ok(info)
    }
}

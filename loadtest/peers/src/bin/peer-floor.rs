//! The benchmark floor: ringws's frame reflector (handshake, then every frame written
//! back unmasked, with no validation and no handler) on ringws's own backends, so the
//! comparison shows what the kernel and the backend cost alone. The backend follows
//! `RINGWS_BACKEND` (`uring`, `epoll`, `auto`).

fn main() -> std::io::Result<()> {
    let args = ringws_peers::Args::from_env();
    ringws::Server::builder()
        .bind(args.bind)
        .shards(args.threads)
        .frame_reflector()
        .build()?
        .run()
}

// An echo server on uWebSockets' C++ API, set up like its examples/EchoServer.cpp but
// with permessage-deflate on and every echo sent compressed (the example sends with
// compress = false), for loadtest/deflate.sh.
// Usage: DeflateEchoServer shared|dedicated [port [plain]]
// Build (uWebSockets and its uSockets checkouts side by side, outside the repository):
//   gcc -O3 -march=native -flto -DLIBUS_NO_SSL -IuSockets/src -c uSockets/src/*.c uSockets/src/eventing/*.c
//   g++ -std=c++20 -O3 -march=native -flto -DLIBUS_NO_SSL -IuWebSockets/src -IuSockets/src \
//     uws-deflate-echo.cpp *.o -lz -o DeflateEchoServer
// ("plain": echoes sent uncompressed, for uWS's load_test, which expects them so).
#include "App.h"
#include <cstring>
#include <cstdlib>
#include <iostream>

int main(int argc, char **argv) {
    struct PerSocketData {};
    bool shared = argc > 1 && std::strcmp(argv[1], "shared") == 0;
    int port = argc > 2 ? std::atoi(argv[2]) : 9001;
    static bool compress_replies = !(argc > 3 && std::strcmp(argv[3], "plain") == 0);
    uWS::CompressOptions opts = shared
        ? uWS::CompressOptions(uWS::SHARED_COMPRESSOR | uWS::SHARED_DECOMPRESSOR)
        : uWS::CompressOptions(uWS::DEDICATED_COMPRESSOR | uWS::DEDICATED_DECOMPRESSOR);
    uWS::App().ws<PerSocketData>("/*", {
        .compression = opts,
        .maxPayloadLength = 100 * 1024 * 1024,
        .idleTimeout = 16,
        .maxBackpressure = 100 * 1024 * 1024,
        .closeOnBackpressureLimit = false,
        .resetIdleTimeoutOnSend = false,
        .sendPingsAutomatically = true,
        .message = [](auto *ws, std::string_view message, uWS::OpCode opCode) {
            ws->send(message, opCode, compress_replies);
        },
    }).listen(port, [port](auto *listen_socket) {
        if (listen_socket) std::cout << "Listening on port " << port << std::endl;
    }).run();
}

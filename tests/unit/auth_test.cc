// Protocol v9's authentication: the messages byte by byte (docs/protocol.md), the key text form
// and key files, the proofs (known answers computed independently), the server's auth-keys table,
// its decision on an AUTH_REQUEST, the failed-attempt limiter, and the CONNECT-time refusals.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "base/errors.h"
#include "base/log.h"
#include "server/auth_keys.h"
#include "server/auth_limiter.h"
#include "server/authenticator.h"
#include "server/negotiation.h"
#include "transport/auth.h"
#include "transport/auth_protocol.h"

namespace ublkrdma {
namespace {

using namespace wire;

auth::Key counting_key() {
  auth::Key k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(i);
  return k;
}

std::string hex(const Proof& p) {
  std::string s;
  for (uint8_t b : p) s += fmt::format("{:02x}", b);
  return s;
}

TEST(AuthProtocol, AuthRequestLayout) {
  AuthRequest r;
  r.flags = kAuthServerKey;
  r.client_nonce.fill(0xaa);
  ASSERT_TRUE(set_identity(r.host_id, "host-a"));
  r.client_proof.fill(0xcc);
  auto b = encode(r);
  ASSERT_EQ(b.size(), 136u);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), "URDM");
  EXPECT_EQ(b[4], 1);  // type
  EXPECT_EQ(b[5], 1);  // flags
  EXPECT_EQ(b[6] | b[7], 0);
  EXPECT_EQ(b[8], 0xaa);
  EXPECT_EQ(b[39], 0xaa);
  EXPECT_EQ(std::string(b.begin() + 40, b.begin() + 46), "host-a");
  EXPECT_EQ(b[46], 0);
  EXPECT_EQ(b[103], 0);
  EXPECT_EQ(b[104], 0xcc);
  EXPECT_EQ(b[135], 0xcc);
  auto d = decode_auth_request(b);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(identity_view(d.value.host_id), "host-a");
}

TEST(AuthProtocol, AuthRequestMalformed) {
  AuthRequest r;
  ASSERT_TRUE(set_identity(r.host_id, "h"));
  const auto good = encode(r);
  auto with = [&](size_t off, uint8_t v) {
    auto b = good;
    b[off] = v;
    return decode_auth_request(b).error;
  };
  EXPECT_EQ(decode_auth_request(std::span(good).first(135)).error, DecodeError::kTooShort);
  std::array<uint8_t, 137> longer{};
  std::copy(good.begin(), good.end(), longer.begin());
  EXPECT_EQ(decode_auth_request(longer).error, DecodeError::kTooShort);  // a batch of commands is not one
  EXPECT_EQ(with(0, 'X'), DecodeError::kBadMagic);
  EXPECT_EQ(with(4, 2), DecodeError::kBadOpcode);
  EXPECT_EQ(with(5, 2), DecodeError::kBadFlags);
  EXPECT_EQ(with(7, 1), DecodeError::kReservedNonZero);
  EXPECT_EQ(with(40, 0), DecodeError::kBadName);     // empty host id
  EXPECT_EQ(with(41, '\n'), DecodeError::kBadName);  // a character outside the set
  EXPECT_EQ(with(50, 'x'), DecodeError::kBadName);   // garbage after the NUL padding
  EXPECT_EQ(with(8, 0xff), DecodeError::kOk);        // nonce bytes are anything
}

TEST(AuthProtocol, AuthResultLayoutAndMalformed) {
  AuthResult r{AuthStatus::kOk, 0x11223344, 0x5566778899aabbccull, {}};
  r.server_proof.fill(0xee);
  auto b = encode(r);
  ASSERT_EQ(b.size(), 64u);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), "URDM");
  EXPECT_EQ(b[4], 2);
  EXPECT_EQ(b[6] | b[7], 0);
  EXPECT_EQ(b[8], 0x44);
  EXPECT_EQ(b[11], 0x11);
  EXPECT_EQ(b[16], 0xcc);
  EXPECT_EQ(b[23], 0x55);
  EXPECT_EQ(b[24], 0xee);
  EXPECT_EQ(b[55], 0xee);
  EXPECT_EQ(b[56] | b[63], 0);
  ASSERT_TRUE(decode_auth_result(b).ok());

  auto with = [&](size_t off, uint8_t v) {
    auto c = b;
    c[off] = v;
    return decode_auth_result(c).error;
  };
  EXPECT_EQ(with(4, 1), DecodeError::kBadOpcode);
  EXPECT_EQ(with(5, 1), DecodeError::kReservedNonZero);
  EXPECT_EQ(with(12, 1), DecodeError::kReservedNonZero);
  EXPECT_EQ(with(60, 1), DecodeError::kReservedNonZero);
  // A refusal grants nothing and proves nothing.
  EXPECT_EQ(with(6, 1), DecodeError::kReservedNonZero);
  auto refusal = encode(AuthResult{AuthStatus::kExportDenied, 0, 0, {}});
  auto d = decode_auth_result(refusal);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value.status, AuthStatus::kExportDenied);
  refusal[6] = 99;  // a newer server's reason: a failure all the same
  d = decode_auth_result(refusal);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value.status, AuthStatus::kFailed);
}

TEST(AuthProtocol, AcceptAuthLayout) {
  AcceptAuth a;
  a.server_nonce.fill(7);
  ASSERT_TRUE(set_identity(a.server_id, "srv:1"));
  auto b = encode(a);
  ASSERT_EQ(b.size(), 96u);
  EXPECT_EQ(b[0], 7);
  EXPECT_EQ(b[31], 7);
  EXPECT_EQ(std::string(b.begin() + 32, b.begin() + 37), "srv:1");
  auto d = decode_accept_auth(b);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(identity_view(d.value.server_id), "srv:1");
  b[32] = 0;
  EXPECT_EQ(decode_accept_auth(b).error, DecodeError::kBadName);
  EXPECT_EQ(decode_accept_auth(std::span(b).first(95)).error, DecodeError::kTooShort);
}

TEST(AuthProtocol, AcceptWithAuthCarriesNoWindow) {
  AcceptData a;
  a.export_size = 1 << 20;
  a.queue_depth = 4;
  a.max_io_bytes = 4096;
  a.features = kFeaturePushWrites | kFeaturePullReads | kFeatureAuth;
  EXPECT_TRUE(decode_accept_data(encode(a)).ok());  // the window comes with the AUTH_RESULT
  a.window_addr = 0x1000;
  a.window_rkey = 5;
  EXPECT_EQ(decode_accept_data(encode(a)).error, DecodeError::kReservedNonZero);
  a.features &= uint16_t(~kFeatureAuth);
  EXPECT_TRUE(decode_accept_data(encode(a)).ok());
  a.version = 8;
  a.features |= kFeatureAuth;
  EXPECT_EQ(decode_accept_data(encode(a)).error, DecodeError::kBadFlags);  // v8 has no AUTH
}

TEST(AuthKey, TextFormKnownAnswersAndRoundTrip) {
  EXPECT_EQ(auth::format_key(auth::Key{}), "URDMA-KEY-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABmaHqt:");
  EXPECT_EQ(auth::format_key(counting_key()), "URDMA-KEY-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9jDc0p:");
  auth::Key k = auth::generate_key();
  auto p = auth::parse_key("  " + auth::format_key(k) + "\r");
  ASSERT_EQ(p.error, nullptr);
  EXPECT_EQ(p.key, k);
  EXPECT_NE(auth::generate_key(), k);
}

TEST(AuthKey, MalformedKeys) {
  std::string good = auth::format_key(counting_key());
  EXPECT_NE(auth::parse_key("").error, nullptr);
  EXPECT_NE(auth::parse_key("DHHC-1:00:" + good.substr(12)).error, nullptr);  // another format
  EXPECT_NE(auth::parse_key(good.substr(0, good.size() - 1)).error, nullptr);  // no closing ':'
  std::string flipped = good;
  flipped[20] = flipped[20] == 'A' ? 'B' : 'A';
  EXPECT_STRNE(auth::parse_key(flipped).error, nullptr);
  EXPECT_NE(std::string(auth::parse_key(flipped).error).find("checksum"), std::string::npos);
  std::string notb64 = good;
  notb64[20] = '*';
  EXPECT_NE(auth::parse_key(notb64).error, nullptr);
}

struct TempFile {
  std::string path;
  TempFile(const std::string& text, mode_t mode) {
    char tmpl[] = "/tmp/ublk-rdma-key-XXXXXX";
    int fd = mkstemp(tmpl);
    path = tmpl;
    EXPECT_EQ(write(fd, text.data(), text.size()), ssize_t(text.size()));
    fchmod(fd, mode);
    close(fd);
  }
  ~TempFile() { unlink(path.c_str()); }
};

TEST(AuthKey, KeyFiles) {
  std::string key = auth::format_key(counting_key());
  {
    TempFile f("# vol0's key\n\n" + key + "\n", 0600);
    EXPECT_EQ(auth::read_key_file(f.path), counting_key());
  }
  {
    TempFile f(key + "\n", 0644);
    try {
      auth::read_key_file(f.path);
      FAIL() << "a key file readable by others was accepted";
    } catch (const SetupError& e) {
      EXPECT_NE(std::string(e.what()).find("chmod 600"), std::string::npos) << e.what();
    }
  }
  {
    TempFile f(key + "\n", 0640);
    EXPECT_THROW(auth::read_key_file(f.path), SetupError);
  }
  {
    TempFile f(key + "\n" + key + "\n", 0600);
    EXPECT_THROW(auth::read_key_file(f.path), SetupError);
  }
  {
    TempFile f("# nothing\n", 0600);
    EXPECT_THROW(auth::read_key_file(f.path), SetupError);
  }
  EXPECT_THROW(auth::read_key_file("/nonexistent/key"), SetupError);
}

auth::ProofInputs sample_inputs() {
  auth::ProofInputs in;
  in.server_nonce.fill(1);
  in.client_nonce.fill(2);
  in.session_id = 0x1122334455667788ull;
  in.queue_id = 3;
  in.export_name = "vol0";
  in.host_id = "host-a";
  in.server_id = "srv";
  in.request_flags = 0;
  return in;
}

TEST(AuthProof, KnownAnswers) {
  // HMAC-SHA-256 over the layout of docs/protocol.md, computed with another implementation.
  auth::ProofInputs in = sample_inputs();
  EXPECT_EQ(hex(auth::compute_proof(counting_key(), auth::Role::kClient, in)),
            "3fcf699f576288481dd0653980993e23a58546dcf92a625af133fd2cabc03f66");
  EXPECT_EQ(hex(auth::compute_proof(counting_key(), auth::Role::kServer, in)),
            "f2ac2ea4e4ca54b2d450a2683a4e44cfad792ed2b2d154035b693673692db320");
}

TEST(AuthProof, EveryInputCounts) {
  auth::ProofInputs base = sample_inputs();
  Proof p0 = auth::compute_proof(counting_key(), auth::Role::kClient, base);
  auto differs = [&](auth::ProofInputs in) {
    return !auth::proofs_equal(p0, auth::compute_proof(counting_key(), auth::Role::kClient, in));
  };
  auto in = base;
  in.server_nonce[31] ^= 1;
  EXPECT_TRUE(differs(in));
  in = base;
  in.client_nonce[0] ^= 1;
  EXPECT_TRUE(differs(in));
  in = base;
  in.session_id ^= 1ull << 63;
  EXPECT_TRUE(differs(in));
  in = base;
  in.queue_id = 4;
  EXPECT_TRUE(differs(in));
  in = base;
  in.export_name = "vol1";
  EXPECT_TRUE(differs(in));
  in = base;
  in.host_id = "host-b";
  EXPECT_TRUE(differs(in));
  in = base;
  in.server_id = "srv2";
  EXPECT_TRUE(differs(in));
  in = base;
  in.request_flags = kAuthServerKey;
  EXPECT_TRUE(differs(in));
  auto k = counting_key();
  k[0] ^= 1;
  EXPECT_FALSE(auth::proofs_equal(p0, auth::compute_proof(k, auth::Role::kClient, base)));
  EXPECT_FALSE(auth::proofs_equal(p0, auth::compute_proof(counting_key(), auth::Role::kServer, base)));
}

TEST(AuthKeys, ParsesHostsKeysAndExports) {
  std::string k1 = auth::format_key(counting_key()), k2 = auth::format_key(auth::Key{});
  auto t = server::AuthTable::parse("# hosts\n\nhost-a " + k1 + " vol0,vol1\n  host-b\t" + k2 + " *  \n", "keys");
  ASSERT_EQ(t.hosts().size(), 2u);
  const server::AuthorizedHost* a = t.find("host-a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->key, counting_key());
  EXPECT_TRUE(a->may_attach("vol1"));
  EXPECT_FALSE(a->may_attach("vol2"));
  EXPECT_EQ(a->line, 3u);
  ASSERT_NE(t.find("host-b"), nullptr);
  EXPECT_TRUE(t.find("host-b")->may_attach("anything"));
  EXPECT_EQ(t.find("host-c"), nullptr);
}

TEST(AuthKeys, BadLinesNameFileAndLine) {
  std::string k = auth::format_key(counting_key());
  auto error_of = [](const std::string& text) {
    try {
      server::AuthTable::parse(text, "keys");
    } catch (const SetupError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  EXPECT_EQ(error_of("\nhost-a " + k + "\n").substr(0, 7), "keys:2:");  // no exports
  EXPECT_EQ(error_of("host-a " + k + " vol0 extra\n").substr(0, 7), "keys:1:");
  EXPECT_EQ(error_of("host/a " + k + " vol0\n").substr(0, 7), "keys:1:");
  EXPECT_EQ(error_of("host-a notakey vol0\n").substr(0, 7), "keys:1:");
  EXPECT_EQ(error_of("host-a " + k + " vol/0\n").substr(0, 7), "keys:1:");
  EXPECT_EQ(error_of("host-a " + k + " vol0,\n").substr(0, 7), "keys:1:");
  EXPECT_EQ(error_of("host-a " + k + " vol0\nhost-a " + k + " vol1\n").substr(0, 7), "keys:2:");
  // A host id with a newline and escapes cannot forge a line in the message.
  std::string e = error_of("h\x1b[2Jx " + k + " vol0\n");
  EXPECT_EQ(e.find('\x1b'), std::string::npos) << e;
}

TEST(AuthKeys, ReloadKeepsOnlyWhatIsStillGranted) {
  std::string k1 = auth::format_key(counting_key()), k2 = auth::format_key(auth::Key{});
  auto before = server::AuthTable::parse("a " + k1 + " vol0,vol1\nb " + k1 + " *\nc " + k1 + " vol0\nd " + k1 +
                                             " vol0\n",
                                         "keys");
  // a loses vol1, b gets another key, c is gone, d is as it was, e is new.
  auto after = server::AuthTable::parse("a " + k1 + " vol0\nb " + k2 + " *\nd " + k1 + " vol0\ne " + k2 + " *\n",
                                        "keys");
  EXPECT_TRUE(server::still_authorized(before, after, "a", "vol0"));
  EXPECT_FALSE(server::still_authorized(before, after, "a", "vol1"));
  EXPECT_FALSE(server::still_authorized(before, after, "b", "vol0"));
  EXPECT_FALSE(server::still_authorized(before, after, "c", "vol0"));
  EXPECT_TRUE(server::still_authorized(before, after, "d", "vol0"));
  EXPECT_FALSE(server::still_authorized(before, after, "e", "vol0"));  // not authenticated against `before`
  EXPECT_TRUE(server::still_authorized(before, before, "b", "anything"));
  EXPECT_EQ(server::describe_reload(before, after), "added e; removed c; changed a, b");
  EXPECT_EQ(server::describe_reload(before, before), "no host changed");
}

struct AuthFixture {
  server::AuthTable table = server::AuthTable::parse(
      "host-a " + auth::format_key(counting_key()) + " vol0\nhost-b " + auth::format_key(auth::Key{}) + " *\n", "keys");
  std::optional<auth::Key> server_key;
  server::AuthContext ctx;
  AuthFixture() {
    ctx.table = &table;
    ctx.server_key = &server_key;
    ctx.server_nonce.fill(1);
    ctx.server_id = "srv";
    ctx.session_id = 0x1122334455667788ull;
    ctx.queue_id = 3;
    ctx.export_name = "vol0";
  }
  // What an honest client's proofs cover on this connection.
  auth::ProofInputs inputs(const char* host, uint8_t flags) const {
    auth::ProofInputs in;
    in.server_nonce = ctx.server_nonce;
    in.client_nonce.fill(2);
    in.session_id = ctx.session_id;
    in.queue_id = ctx.queue_id;
    in.export_name = ctx.export_name;
    in.host_id = host;
    in.server_id = ctx.server_id;
    in.request_flags = flags;
    return in;
  }
  // The AUTH_REQUEST an honest client with `key` sends.
  std::array<uint8_t, kAuthRequestSize> request(const char* host, const auth::Key& key, uint8_t flags = 0) const {
    auth::ProofInputs in = inputs(host, flags);
    AuthRequest r;
    r.flags = flags;
    r.client_nonce = in.client_nonce;
    set_identity(r.host_id, host);
    r.client_proof = auth::compute_proof(key, auth::Role::kClient, in);
    return encode(r);
  }
  Proof expected_server_proof(const char* host, const auth::Key& key, uint8_t flags) const {
    return auth::compute_proof(key, auth::Role::kServer, inputs(host, flags));
  }
};

TEST(Authenticator, RightKeyIsAcceptedAndTheServerProvesTheSameKey) {
  AuthFixture f;
  auto v = server::check_auth_request(f.request("host-a", counting_key()), f.ctx);
  ASSERT_TRUE(v.ok()) << v.reason;
  EXPECT_EQ(v.host_id, "host-a");
  EXPECT_EQ(v.result.server_proof, f.expected_server_proof("host-a", counting_key(), 0));
}

TEST(Authenticator, ServerKeyOnRequest) {
  AuthFixture f;
  auto v = server::check_auth_request(f.request("host-a", counting_key(), kAuthServerKey), f.ctx);
  EXPECT_EQ(v.result.status, AuthStatus::kNoServerKey);
  auth::Key sk{};
  sk.fill(0x5a);
  f.server_key = sk;
  v = server::check_auth_request(f.request("host-a", counting_key(), kAuthServerKey), f.ctx);
  ASSERT_TRUE(v.ok()) << v.reason;
  EXPECT_EQ(v.result.server_proof, f.expected_server_proof("host-a", sk, kAuthServerKey));
}

TEST(Authenticator, Refusals) {
  AuthFixture f;
  auth::Key wrong = counting_key();
  wrong[5] ^= 0x40;
  auto v = server::check_auth_request(f.request("host-a", wrong), f.ctx);
  EXPECT_EQ(v.result.status, AuthStatus::kFailed);
  EXPECT_EQ(v.result.server_proof, Proof{});
  v = server::check_auth_request(f.request("host-z", counting_key()), f.ctx);
  EXPECT_EQ(v.result.status, AuthStatus::kFailed);  // unknown hosts look like wrong keys
  EXPECT_STREQ(v.reason, "unknown host id");
  f.ctx.export_name = "vol1";
  v = server::check_auth_request(f.request("host-a", counting_key()), f.ctx);
  EXPECT_EQ(v.result.status, AuthStatus::kExportDenied);
  v = server::check_auth_request(f.request("host-b", auth::Key{}), f.ctx);
  EXPECT_TRUE(v.ok());  // '*'
  f.ctx.export_name = "vol0";
  auto garbage = f.request("host-a", counting_key());
  garbage[0] = 0;
  EXPECT_EQ(server::check_auth_request(garbage, f.ctx).result.status, AuthStatus::kMalformed);
  EXPECT_EQ(server::check_auth_request(std::span(garbage).first(48), f.ctx).result.status, AuthStatus::kMalformed);
}

TEST(Authenticator, ReplayToAnotherConnectionFails) {
  AuthFixture f;
  auto recorded = f.request("host-a", counting_key());
  ASSERT_TRUE(server::check_auth_request(recorded, f.ctx).ok());
  f.ctx.server_nonce[0] ^= 1;  // the next connection's fresh nonce
  EXPECT_EQ(server::check_auth_request(recorded, f.ctx).result.status, AuthStatus::kFailed);
  f.ctx.server_nonce[0] ^= 1;
  f.ctx.queue_id = 4;  // the same session's other queue
  EXPECT_EQ(server::check_auth_request(recorded, f.ctx).result.status, AuthStatus::kFailed);
}

TEST(AuthLimiter, BlocksAfterRepeatedFailuresThenForgets) {
  server::AuthLimiter l;
  auto t0 = server::AuthLimiter::Clock::now();
  for (uint32_t i = 0; i < server::AuthLimiter::kMaxFailures - 1; ++i) l.record_failure("192.0.2.1", t0);
  EXPECT_FALSE(l.blocked("192.0.2.1", t0));
  l.record_failure("192.0.2.1", t0);
  EXPECT_TRUE(l.blocked("192.0.2.1", t0 + std::chrono::seconds(1)));
  EXPECT_FALSE(l.blocked("192.0.2.2", t0));  // others are not affected
  EXPECT_FALSE(l.blocked("192.0.2.1", t0 + server::AuthLimiter::kDefaultWindow));
  // Blocked for a whole window after the failure that reached the limit.
  auto t1 = t0 + std::chrono::seconds(100);
  for (uint32_t i = 0; i < server::AuthLimiter::kMaxFailures - 1; ++i) l.record_failure("192.0.2.1", t1);
  auto t2 = t1 + server::AuthLimiter::kDefaultWindow - std::chrono::seconds(1);
  l.record_failure("192.0.2.1", t2);
  EXPECT_TRUE(l.blocked("192.0.2.1", t2 + server::AuthLimiter::kDefaultWindow - std::chrono::seconds(1)));
  EXPECT_FALSE(l.blocked("192.0.2.1", t2 + server::AuthLimiter::kDefaultWindow));
  EXPECT_EQ(l.failures(), 2 * server::AuthLimiter::kMaxFailures);
}

TEST(AuthLimiter, WindowIsConfigurable) {
  server::AuthLimiter l(std::chrono::seconds(5));  // serve --auth-backoff 5
  auto t0 = server::AuthLimiter::Clock::now();
  for (uint32_t i = 0; i < server::AuthLimiter::kMaxFailures; ++i) l.record_failure("192.0.2.1", t0);
  EXPECT_TRUE(l.blocked("192.0.2.1", t0 + std::chrono::seconds(4)));
  EXPECT_FALSE(l.blocked("192.0.2.1", t0 + std::chrono::seconds(5)));
  // Failures further apart than the window do not add up.
  for (uint32_t i = 0; i < server::AuthLimiter::kMaxFailures; ++i)
    l.record_failure("192.0.2.3", t0 + std::chrono::seconds(6) * i);
  EXPECT_FALSE(l.blocked("192.0.2.3", t0 + std::chrono::seconds(6) * server::AuthLimiter::kMaxFailures));
}

TEST(AuthLimiter, WindowSlides) {
  // Failures counted against a window fixed at the first of them would let the fourth and the
  // following ones start a new count; the window ends at each failure instead.
  server::AuthLimiter l;  // 30 s
  auto t0 = server::AuthLimiter::Clock::now();
  for (int i = 0; i < 3; ++i) l.record_failure("192.0.2.1", t0);
  for (int i = 29; i < 34; ++i) {
    EXPECT_FALSE(l.blocked("192.0.2.1", t0 + std::chrono::seconds(i)));
    l.record_failure("192.0.2.1", t0 + std::chrono::seconds(i));
  }
  // The last five, t0 + 29..33 s, lie within 30 s.
  EXPECT_TRUE(l.blocked("192.0.2.1", t0 + std::chrono::seconds(34)));
  EXPECT_TRUE(l.blocked("192.0.2.1", t0 + std::chrono::seconds(62)));
  EXPECT_FALSE(l.blocked("192.0.2.1", t0 + std::chrono::seconds(63)));
  // One failure every 8 s: four fit into the window, never five.
  for (int i = 0; i < 20; ++i) {
    auto t = t0 + std::chrono::seconds(100 + 8 * i);
    EXPECT_FALSE(l.blocked("192.0.2.2", t)) << i;
    l.record_failure("192.0.2.2", t);
  }
}

TEST(AuthLimiter, TableIsBounded) {
  server::AuthLimiter l;
  auto t0 = server::AuthLimiter::Clock::now();
  for (size_t i = 0; i < server::AuthLimiter::kMaxAddresses + 100; ++i)
    l.record_failure("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256), t0 + std::chrono::milliseconds(i));
  EXPECT_EQ(l.tracked(), server::AuthLimiter::kMaxAddresses);
}

TEST(AuthNegotiation, RequiredAuthenticationAndBackoff) {
  server::ExportInfo vol0{64ull << 20, 512, false, 0, true};
  auto lookup = [&](std::string_view name, server::ExportInfo& info) { return name == "vol0" ? (info = vol0, 0) : -1; };
  server::ServerLimits limits;
  limits.auth_required = true;
  ConnectRequest r;
  r.queue_depth = 8;
  r.max_io_bytes = 4096;
  r.flags = kConnectPushWrites | kConnectPullReads;
  r.set_name("vol0");
  sockaddr_in p{};
  p.sin_family = AF_INET;
  inet_pton(AF_INET, "192.0.2.7", &p.sin_addr);
  auto run = [&] { return server::negotiate(encode(r), reinterpret_cast<sockaddr*>(&p), {}, lookup, limits); };
  auto n = run();
  EXPECT_FALSE(n.accepted);
  EXPECT_EQ(n.reject.status, ConnectStatus::kAuthRequired);
  r.flags |= kConnectAuth;
  n = run();
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_TRUE(n.accept.auth());
  EXPECT_EQ(n.accept.window_rkey, 0u);
  limits.auth_backoff = true;
  n = run();
  EXPECT_EQ(n.reject.status, ConnectStatus::kAuthBackoff);
  limits.auth_required = false;  // an unauthenticating server grants no AUTH
  limits.auth_backoff = false;
  n = run();
  ASSERT_TRUE(n.accepted);
  EXPECT_FALSE(n.accept.auth());
  r.version = 8;  // v8 has no AUTH flag
  EXPECT_EQ(run().reject.status, ConnectStatus::kBadParams);
}

TEST(LogEscaping, PeerStringsCannotForgeLines) {
  EXPECT_EQ(log::escaped("vol0"), "vol0");
  EXPECT_EQ(log::escaped("a\nb\x1b[31m\\"), "a\\x0ab\\x1b[31m\\\\");
  EXPECT_EQ(log::escaped(std::string("\xff\0", 2)), "\\xff\\x00");
  EXPECT_EQ(log::escaped(std::string(200, 'x'), 4), "xxxx...");
}

}  // namespace
}  // namespace ublkrdma

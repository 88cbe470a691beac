#include "server/export_spec.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/errors.h"

namespace ublkrdma::server {
namespace {

// Expects parse to throw a SetupError whose message contains every `needle`.
template <typename F>
void expect_error(F&& parse, std::initializer_list<const char*> needles) {
  try {
    parse();
    ADD_FAILURE() << "no error";
  } catch (const SetupError& e) {
    for (const char* n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what() << " / " << n;
  }
}

TEST(ExportSpec, Rbd) {
  ExportSpec s = parse_export_spec("vol0=rbd:pool/img");
  EXPECT_EQ(s.kind, BackendKind::kRbd);
  EXPECT_EQ(s.rbd.pool, "pool");
  EXPECT_EQ(s.rbd.rbd_namespace, "");
  EXPECT_EQ(s.rbd.image, "img");
  EXPECT_EQ(s.rbd.snapshot, "");
  EXPECT_EQ(s.rbd.ceph_conf, "");
  EXPECT_EQ(s.rbd.ceph_id, "");
  EXPECT_EQ(describe(s), "vol0=rbd:pool/img");

  s = parse_export_spec("snap=rbd:my-pool/ns1/image.2@before_upgrade?conf=/etc/ceph/other.conf&id=gw1");
  EXPECT_EQ(s.rbd.pool, "my-pool");
  EXPECT_EQ(s.rbd.rbd_namespace, "ns1");
  EXPECT_EQ(s.rbd.image, "image.2");
  EXPECT_EQ(s.rbd.snapshot, "before_upgrade");
  EXPECT_EQ(s.rbd.ceph_conf, "/etc/ceph/other.conf");
  EXPECT_EQ(s.rbd.ceph_id, "gw1");
  EXPECT_EQ(describe(s), "snap=rbd:my-pool/ns1/image.2@before_upgrade");
  EXPECT_EQ(parse_export_spec("v=rbd:p/i?id=x").rbd.ceph_id, "x");
  EXPECT_EQ(parse_export_spec("v=rbd:p/i@s").rbd.snapshot, "s");
}

TEST(ExportSpec, RbdErrors) {
  expect_error([] { parse_export_spec("v=rbd:"); }, {"missing '/' between POOL and IMAGE"});
  expect_error([] { parse_export_spec("v=rbd:img"); }, {"missing '/' between POOL and IMAGE"});
  expect_error([] { parse_export_spec("v=rbd:/img"); }, {"missing POOL"});
  expect_error([] { parse_export_spec("v=rbd:pool/"); }, {"missing IMAGE"});
  expect_error([] { parse_export_spec("v=rbd:pool//img"); }, {"missing NAMESPACE"});
  expect_error([] { parse_export_spec("v=rbd:p/n/x/img"); }, {"NAMESPACE 'n/x' contains '/'"});
  expect_error([] { parse_export_spec("v=rbd:pool/img@"); }, {"missing SNAP"});
  expect_error([] { parse_export_spec("v=rbd:pool/img@a@b"); }, {"SNAP 'a@b' contains '@'"});
  expect_error([] { parse_export_spec("v=rbd:pool/im\x01g"); }, {"IMAGE", "control character"});
  expect_error([] { parse_export_spec("v=rbd:pool/img?"); }, {"empty option list after '?'"});
  expect_error([] { parse_export_spec("v=rbd:pool/img?id=a&"); }, {"empty option after '&'"});
  expect_error([] { parse_export_spec("v=rbd:pool/img?conf"); }, {"option 'conf' needs a value"});
  expect_error([] { parse_export_spec("v=rbd:pool/img?conf="); }, {"option 'conf=' needs a value"});
  expect_error([] { parse_export_spec("v=rbd:pool/img?user=a"); }, {"unknown option 'user' for rbd"});
  expect_error([] { parse_export_spec("v=rbd:pool/img?id=client.admin"); }, {"bad id 'client.admin'"});
  expect_error([] { parse_export_spec("v=rbd:pool/img?id=a b"); }, {"bad id 'a b'"});
  expect_error([] { parse_export_spec(std::string("v=rbd:pool/img?conf=/a\0b", 24)); }, {"NUL"});
}

TEST(ExportSpec, CephId) {
  EXPECT_TRUE(is_valid_ceph_id("admin"));
  EXPECT_TRUE(is_valid_ceph_id("gw-1.a_b"));
  EXPECT_FALSE(is_valid_ceph_id(""));
  EXPECT_FALSE(is_valid_ceph_id("client.admin"));
  EXPECT_FALSE(is_valid_ceph_id("a/b"));
  EXPECT_FALSE(is_valid_ceph_id(std::string(65, 'a')));
}

TEST(ExportSpec, Ram) {
  ExportSpec s = parse_export_spec("vol0=ram:4G");
  EXPECT_EQ(s.name, "vol0");
  EXPECT_EQ(s.kind, BackendKind::kRam);
  EXPECT_EQ(s.size, 4ull << 30);
  EXPECT_FALSE(s.hugepages);
  EXPECT_FALSE(s.populate);
  EXPECT_FALSE(s.read_only);
  EXPECT_EQ(describe(s), "vol0=ram:4G");

  s = parse_export_spec("a.b_c-D9=ram:512M,hugepages,populate");
  EXPECT_EQ(s.name, "a.b_c-D9");
  EXPECT_EQ(s.size, 512ull << 20);
  EXPECT_TRUE(s.hugepages);
  EXPECT_TRUE(s.populate);
  EXPECT_EQ(describe(s), "a.b_c-D9=ram:512M,hugepages,populate");
  EXPECT_TRUE(parse_export_spec("x=ram:64k,populate").populate);
  EXPECT_EQ(parse_export_spec("x=ram:1048576").size, 1048576u);
}

TEST(ExportSpec, NullAndFile) {
  ExportSpec s = parse_export_spec("n=null:1T");
  EXPECT_EQ(s.kind, BackendKind::kNull);
  EXPECT_EQ(s.size, 1ull << 40);
  EXPECT_EQ(describe(s), "n=null:1T");

  s = parse_export_spec("vol1=file:/srv/disk.img");
  EXPECT_EQ(s.kind, BackendKind::kFile);
  EXPECT_EQ(s.path, "/srv/disk.img");
  EXPECT_EQ(s.size, 0u);
  // The path is taken verbatim, commas and '=' included.
  EXPECT_EQ(parse_export_spec("f=file:/a,b=c:d").path, "/a,b=c:d");
  EXPECT_EQ(parse_export_spec("f=file:relative.img").path, "relative.img");
  EXPECT_EQ(describe(parse_export_spec("f=file:/dev/sdb")), "f=file:/dev/sdb");
}

TEST(ExportSpec, Names) {
  EXPECT_TRUE(is_valid_export_name("a"));
  EXPECT_TRUE(is_valid_export_name(std::string(32, 'x')));
  EXPECT_FALSE(is_valid_export_name(std::string(33, 'x')));
  EXPECT_FALSE(is_valid_export_name(""));
  for (const char* bad : {"a b", "a/b", "a:b", "a,b", "ü", "a\n", "a*", "a@b"}) EXPECT_FALSE(is_valid_export_name(bad)) << bad;
  EXPECT_NO_THROW(parse_export_spec(std::string(32, 'n') + "=null:1M"));
}

TEST(ExportSpec, MalformedInputs) {
  struct Case {
    const char* text;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"", "missing '='"},
      {"vol0", "missing '='"},
      {"vol0ram:4G", "missing '='"},
      {"=ram:4G", "missing NAME"},
      {"vol 0=ram:4G", "bad NAME"},
      {"vol/0=ram:4G", "bad NAME"},
      {"vol0=ram", "missing KIND"},
      {"vol0=", "missing KIND"},
      {"vol0=4G", "missing KIND"},
      {"vol0=disk:4G", "unknown KIND 'disk'"},
      {"vol0=RAM:4G", "unknown KIND 'RAM'"},
      {"vol0=:4G", "unknown KIND ''"},
      {"vol0=ram:", "missing SIZE"},
      {"vol0=ram:,hugepages", "missing SIZE"},
      {"vol0=ram:0", "must not be 0"},
      {"vol0=ram:0G", "must not be 0"},
      {"vol0=ram:-4G", "bad SIZE"},
      {"vol0=ram:4Q", "bad SIZE"},
      {"vol0=ram:1.5G", "bad SIZE"},
      {"vol0=ram:99999999999999999999", "too large"},
      {"vol0=ram:32E", "too large"},
      {"vol0=ram:1000", "not a multiple of 512"},
      {"vol0=null:513", "not a multiple of 512"},
      {"vol0=ram:4G,", "empty option"},
      {"vol0=ram:4G,,hugepages", "empty option"},
      {"vol0=ram:4G,huge", "unknown option 'huge'"},
      {"vol0=null:4G,hugepages", "unknown option 'hugepages'"},
      {"vol0=null:", "missing SIZE"},
      {"vol0=file:", "missing PATH"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    expect_error([&] { parse_export_spec(c.text); }, {c.why, "--export"});
  }
  std::string long_name(33, 'x');
  expect_error([&] { parse_export_spec(long_name + "=ram:1M"); }, {"bad NAME"});
  // A NUL would end the path open(2) sees: "/tmp/a" instead of what was given.
  expect_error([&] { parse_export_spec(std::string("vol0=file:/tmp/a\0b", 18)); }, {"NUL", "--export"});
}

sockaddr_in v4(const char* a) {
  sockaddr_in s{};
  s.sin_family = AF_INET;
  EXPECT_EQ(inet_pton(AF_INET, a, &s.sin_addr), 1) << a;
  return s;
}

sockaddr_in6 v6(const char* a) {
  sockaddr_in6 s{};
  s.sin6_family = AF_INET6;
  EXPECT_EQ(inet_pton(AF_INET6, a, &s.sin6_addr), 1) << a;
  return s;
}

bool has(const Cidr& c, const char* addr) {
  if (std::strchr(addr, ':')) {
    sockaddr_in6 s = v6(addr);
    return c.contains(reinterpret_cast<sockaddr*>(&s));
  }
  sockaddr_in s = v4(addr);
  return c.contains(reinterpret_cast<sockaddr*>(&s));
}

TEST(Cidr, Ipv4) {
  Cidr c = parse_cidr("192.0.2.0/24");
  EXPECT_EQ(c.family, AF_INET);
  EXPECT_EQ(c.prefix_length, 24);
  EXPECT_EQ(c.to_string(), "192.0.2.0/24");
  EXPECT_TRUE(has(c, "192.0.2.0"));
  EXPECT_TRUE(has(c, "192.0.2.255"));
  EXPECT_FALSE(has(c, "192.0.3.0"));
  EXPECT_FALSE(has(c, "192.0.1.255"));
  EXPECT_FALSE(has(c, "10.0.0.1"));
  // IPv4-mapped IPv6 peers (dual-stack listeners) match the IPv4 network.
  EXPECT_TRUE(has(c, "::ffff:192.0.2.7"));
  EXPECT_FALSE(has(c, "::ffff:192.0.3.7"));
  EXPECT_FALSE(has(c, "2001:db8::1"));
  EXPECT_FALSE(has(c, "::192.0.2.7"));  // IPv4-compatible, not mapped

  Cidr odd = parse_cidr("10.1.2.3/13");  // host bits cleared
  EXPECT_EQ(odd.to_string(), "10.0.0.0/13");
  EXPECT_TRUE(has(odd, "10.7.255.255"));
  EXPECT_FALSE(has(odd, "10.8.0.0"));

  Cidr host = parse_cidr("127.0.0.1");
  EXPECT_EQ(host.prefix_length, 32);
  EXPECT_TRUE(has(host, "127.0.0.1"));
  EXPECT_FALSE(has(host, "127.0.0.2"));

  Cidr all = parse_cidr("0.0.0.0/0");
  EXPECT_TRUE(has(all, "1.2.3.4"));
  EXPECT_TRUE(has(all, "255.255.255.255"));
  EXPECT_FALSE(has(all, "2001:db8::1"));
  EXPECT_TRUE(has(parse_cidr("1.2.3.4/32"), "1.2.3.4"));
}

TEST(Cidr, Ipv6) {
  Cidr c = parse_cidr("2001:db8::/32");
  EXPECT_EQ(c.family, AF_INET6);
  EXPECT_EQ(c.to_string(), "2001:db8::/32");
  EXPECT_TRUE(has(c, "2001:db8::1"));
  EXPECT_TRUE(has(c, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
  EXPECT_FALSE(has(c, "2001:db9::"));
  EXPECT_FALSE(has(c, "192.0.2.1"));

  Cidr odd = parse_cidr("fd00::1234/121");
  EXPECT_EQ(odd.to_string(), "fd00::1200/121");
  EXPECT_TRUE(has(odd, "fd00::127f"));
  EXPECT_FALSE(has(odd, "fd00::1280"));

  EXPECT_EQ(parse_cidr("::1").prefix_length, 128);
  EXPECT_TRUE(has(parse_cidr("::1"), "::1"));
  EXPECT_FALSE(has(parse_cidr("::1"), "::2"));
  EXPECT_TRUE(has(parse_cidr("::/0"), "fe80::1"));
  // An IPv6 network written over the mapped range also matches plain IPv4 peers.
  EXPECT_TRUE(has(parse_cidr("::ffff:10.0.0.0/104"), "10.9.8.7"));
  EXPECT_FALSE(has(parse_cidr("::ffff:10.0.0.0/104"), "11.0.0.1"));
}

TEST(Cidr, NonIpPeers) {
  Cidr c = parse_cidr("0.0.0.0/0");
  EXPECT_FALSE(c.contains(nullptr));
  sockaddr unix_peer{};
  unix_peer.sa_family = AF_UNIX;
  EXPECT_FALSE(c.contains(&unix_peer));
  EXPECT_FALSE(Cidr{}.contains(&unix_peer));
}

TEST(Cidr, Malformed) {
  struct Case {
    const char* text;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"", "empty"},
      {"/24", "missing address"},
      {"192.0.2.0/", "missing prefix length"},
      {"192.0.2.0/33", "larger than 32"},
      {"2001:db8::/129", "larger than 128"},
      {"192.0.2.0/-1", "bad prefix length"},
      {"192.0.2.0/+8", "bad prefix length"},
      {"192.0.2.0/2a", "bad prefix length"},
      {"192.0.2.0/0024", "bad prefix length"},
      {"192.0.2.0/24/8", "bad prefix length"},
      {"192.0.2.0/ 24", "bad prefix length"},
      {"192.0.2/24", "not an IPv4 address"},
      {"192.0.2.256/24", "not an IPv4 address"},
      {"10.1", "not an IPv4 address"},
      {"0x0a.0.0.1", "not an IPv4 address"},
      {"host.example/24", "not an IPv4 address"},
      {" 192.0.2.0/24", "not an IPv4 address"},
      {"2001:db8:::/32", "not an IPv6 address"},
      {"fe80::1%eth0/64", "not an IPv6 address"},
      {"2001:db8::g/32", "not an IPv6 address"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    expect_error([&] { parse_cidr(c.text); }, {c.why, "--allow"});
  }
  // inet_pton would stop at the NUL and take "10.0.0.1" alone.
  expect_error([&] { parse_cidr(std::string("10.0.0.1\0junk/8", 15)); }, {"NUL", "--allow"});
}

TEST(Cidr, IsAllowed) {
  sockaddr_in peer = v4("192.0.2.9");
  auto* p = reinterpret_cast<sockaddr*>(&peer);
  EXPECT_TRUE(is_allowed({}, p));
  std::vector<Cidr> allow = {parse_cidr("10.0.0.0/8")};
  EXPECT_FALSE(is_allowed(allow, p));
  allow.push_back(parse_cidr("192.0.2.0/28"));
  EXPECT_TRUE(is_allowed(allow, p));
}

TEST(ExportConfig, Builds) {
  std::vector<std::string> exports = {"vol0=ram:4G", "vol1=file:/srv/disk.img", "n=null:1G"};
  std::vector<std::string> ro = {"vol1"};
  std::vector<std::string> allow = {"192.0.2.0/24", "::1"};
  ExportConfig c = build_export_config(exports, ro, allow);
  ASSERT_EQ(c.exports.size(), 3u);
  ASSERT_NE(c.find("vol1"), nullptr);
  EXPECT_TRUE(c.find("vol1")->read_only);
  EXPECT_FALSE(c.find("vol0")->read_only);
  EXPECT_EQ(c.find("vol2"), nullptr);
  EXPECT_EQ(c.find(""), nullptr);
  EXPECT_EQ(c.allow.size(), 2u);
  EXPECT_EQ(describe(*c.find("vol1")), "vol1=file:/srv/disk.img (read-only)");
}

TEST(ExportConfig, Errors) {
  std::vector<std::string> none, one = {"vol0=ram:1G"};
  expect_error([&] { build_export_config(none, none, none); }, {"no --export"});
  std::vector<std::string> dup = {"vol0=ram:1G", "vol0=null:1G"};
  expect_error([&] { build_export_config(dup, none, none); }, {"used twice", "vol0"});
  std::vector<std::string> ro = {"vol9"};
  expect_error([&] { build_export_config(one, ro, none); }, {"--read-only 'vol9'", "no --export"});
  std::vector<std::string> allow = {"300.0.0.0/8"};
  expect_error([&] { build_export_config(one, none, allow); }, {"--allow '300.0.0.0/8'"});
  std::vector<std::string> bad = {"vol0=ram:1G", "oops"};
  expect_error([&] { build_export_config(bad, none, none); }, {"--export 'oops'"});
}

}  // namespace
}  // namespace ublkrdma::server

// The server's logic without the network: enrolment, work, validation of hostile updates,
// durability across a crash, FedAvg rounds and leases.
#include "coordinator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "ftte/core/model.h"
#include "ftte/data/lm_model.h"
#include "ftte/data/synthetic.h"
#include "ftte/fl/changed_rows.h"
#include "ftte/fl/encoding.h"
#include "ftte/fl/privacy.h"
#include "secure_client.h"
#include "wire.h"

namespace ftte::net {
namespace {

struct Harness {
  std::string dir;
  ServeConfig config;
  double now = 0;
  std::vector<std::string> log;
  std::unique_ptr<Coordinator> c;

  Harness(const std::string& name, fl::Algorithm algorithm) {
    dir = ::testing::TempDir() + "ftte_coord_" + std::to_string(::getpid()) + "_" + name;
    std::filesystem::remove_all(dir);
    config.state_dir = dir;
    config.enroll_key = "secret";
    config.model = "mlp";
    config.strategy.algorithm = algorithm;
    config.strategy.concurrency = 4;
    config.strategy.buffer = 2;
    config.client.local_steps = 2;
    config.client.batch = 8;
    config.eval_samples = 64;
    config.eval_every = 1;
    config.fsync = false;
    config.snapshot_every_s = 1e9;
    config.insecure = true;
  }
  Status Start() {
    auto r = Coordinator::Create(
        config, data::SyntheticImages(64, 9), [this] { return now; },
        [this](const std::string& m) { log.push_back(m); });
    if (!r.ok()) return r.status();
    c = std::move(r).value();
    return Status::Ok();
  }
  // A well-formed enrolment request with the right key.
  static v1::EnrollRequest EnrollRequest(const std::string& name, int64_t budget = 64 << 20) {
    v1::EnrollRequest req;
    req.set_schema_revision(kSchemaRevision);
    req.set_device_name(name);
    req.set_enroll_key("secret");
    req.set_memory_budget_bytes(budget);
    return req;
  }
  // Enrols a device and returns its id.
  int64_t Enroll(const std::string& name, int64_t budget = 64 << 20) {
    auto r = c->Enroll(EnrollRequest(name, budget));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->device_id() : -1;
  }
  // A well-formed update of device d from the current version, every value `value`; with
  // `lease`, the device first asks for work (as devices do), which leases that version to it.
  fl::Update MakeUpdate(int64_t d, int64_t id, float value = 1e-3f, bool lease = true) {
    if (lease) {
      auto w = c->GetWork(d, {});
      EXPECT_TRUE(w.ok() && w->kind() == v1::Work::TRAIN) << "device " << d << " got no work";
    }
    fl::Update u;
    u.device = d;
    u.base_version = c->version();
    u.num_samples = 16;
    u.loss = 1.5f;
    u.variance = 0.01 * static_cast<double>(id);
    u.update_id = id;
    u.delta.assign(static_cast<size_t>(c->mask().Numel(c->layout())), value);
    return u;
  }
  v1::SubmitRequest Request(const fl::Update& u) {
    v1::SubmitRequest r;
    r.set_update_id(u.update_id);
    const fl::Mask m = c->mask();
    r.set_update(changed_rows ? fl::EncodeChangedRows(u, m, c->layout(), {})
                              : fl::EncodeUpdate(u, m, c->layout(),
                                                 {!(m == fl::Mask::Full(c->layout())), false}));
    return r;
  }
  bool changed_rows = false;  // upload only the rows that changed, as devices do
  Result<v1::SubmitResponse> Submit(const fl::Update& u) { return c->Submit(u.device, Request(u)); }
};

TEST(CoordinatorTest, EnrolmentNeedsTheKeyAndTheSchemaRevision) {
  Harness h("enrol", fl::Algorithm::kFedBuff);
  ASSERT_TRUE(h.Start().ok());
  v1::EnrollRequest req = Harness::EnrollRequest("phone");
  req.set_enroll_key("guess");
  auto bad = h.c->Enroll(req);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kUnauthenticated);
  req.set_enroll_key("secret");
  req.set_schema_revision(kSchemaRevision + 1);
  auto future = h.c->Enroll(req);
  ASSERT_FALSE(future.ok());
  EXPECT_NE(future.status().message().find("schema revision"), std::string::npos);
  req.set_schema_revision(kSchemaRevision);
  auto ok = h.c->Enroll(req);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->model(), "mlp");
  EXPECT_EQ(LayoutFromProto(ok->layout()).size(), h.c->layout().size());
  EXPECT_TRUE(ok->eligible());
  EXPECT_EQ(h.c->Authenticate(ok->token()).value(), ok->device_id());
  EXPECT_EQ(h.c->Authenticate("").status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(h.c->Authenticate("forged").status().code(), StatusCode::kUnauthenticated);
  // Re-enrolling a name needs its current token: then the id stays and the old token is revoked.
  req.set_token(ok->token());
  auto again = h.c->Enroll(req);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->device_id(), ok->device_id());
  EXPECT_FALSE(h.c->Authenticate(ok->token()).ok());
  EXPECT_TRUE(h.c->Authenticate(again->token()).ok());
}

// Regression (issue 11): enrolling under another device's name revoked that device's token, so
// two devices could knock each other out in a loop. A name collision now revokes nothing.
TEST(CoordinatorTest, ANameCollisionNeverRevokesTheDeviceThatHoldsIt) {
  Harness h("collide", fl::Algorithm::kFedBuff);
  ASSERT_TRUE(h.Start().ok());
  v1::EnrollRequest req = Harness::EnrollRequest("victim");
  auto victim = h.c->Enroll(req);
  ASSERT_TRUE(victim.ok());
  for (const char* proof : {"", "0000", "not-the-token"}) {
    req.set_token(proof);
    auto thief = h.c->Enroll(req);
    ASSERT_FALSE(thief.ok()) << proof;
    EXPECT_EQ(thief.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(thief.status().message().find("choose another name"), std::string::npos);
  }
  EXPECT_EQ(h.c->Authenticate(victim->token()).value(), victim->device_id());
  EXPECT_EQ(h.c->rejected().at("enrol: name taken"), 3);
  // The state directory holds no token a thief could use: only hashes, across restarts too.
  ASSERT_TRUE(h.c->Checkpoint().ok());
  for (const auto& e : std::filesystem::recursive_directory_iterator(h.dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream f(e.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find(victim->token()), std::string::npos) << e.path();
  }
  h.c.reset();
  ASSERT_TRUE(h.Start().ok());
  EXPECT_EQ(h.c->Authenticate(victim->token()).value(), victim->device_id());
}

TEST(CoordinatorTest, DeviceNamesCannotForgeLogLines) {
  Harness h("lognames", fl::Algorithm::kFedBuff);
  ASSERT_TRUE(h.Start().ok());
  const std::string forged = "phone\n[ftte serve] target accuracy reached 'x' \\";
  v1::EnrollRequest req = Harness::EnrollRequest(forged);
  auto refused = h.c->Enroll(req);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("no control characters"), std::string::npos);
  req.set_enroll_key("guess");
  ASSERT_FALSE(h.c->Enroll(req).ok());
  for (const std::string& line : h.log) EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  EXPECT_NE(h.log.back().find("'phone\\x0a[ftte serve] target accuracy reached \\x27x\\x27 \\x5c'"),
            std::string::npos)
      << h.log.back();
}

// Issue 11: an admin credential for Status; a device's token cannot read federation status.
TEST(CoordinatorTest, OnlyTheAdminCredentialReadsStatus) {
  Harness none("noadmin", fl::Algorithm::kFedBuff);
  ASSERT_TRUE(none.Start().ok());
  EXPECT_NE(none.c->AuthenticateAdmin("").message().find("set [auth] admin_token"),
            std::string::npos);
  Harness h("admin", fl::Algorithm::kFedBuff);
  h.config.admin_token = "operator-secret";
  ASSERT_TRUE(h.Start().ok());
  auto device = h.c->Enroll(Harness::EnrollRequest("phone"));
  ASSERT_TRUE(device.ok());
  const Status refused = h.c->AuthenticateAdmin(device->token());
  EXPECT_EQ(refused.code(), StatusCode::kUnauthenticated);
  EXPECT_NE(refused.message().find("device tokens cannot read it"), std::string::npos);
  EXPECT_FALSE(h.c->AuthenticateAdmin("operator-secre").ok());
  EXPECT_TRUE(h.c->AuthenticateAdmin("operator-secret").ok());
}

TEST(CoordinatorTest, DeviceBelowTheBudgetIsExcluded) {
  Harness h("excluded", fl::Algorithm::kFtte);
  ASSERT_TRUE(h.Start().ok());
  const int64_t d = h.Enroll("watch", 1 << 10);
  auto w = h.c->GetWork(d, {});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->kind(), v1::Work::INELIGIBLE);
  auto s = h.Submit(h.MakeUpdate(d, 1, 1e-3f, /*lease=*/false));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(h.c->rejected().at("ineligible"), 1);
}

TEST(CoordinatorTest, WorkCarriesOnlyTheRowsChangedSinceTheDevicesVersion) {
  Harness h("sync", fl::Algorithm::kFtte);
  h.config.strategy.mask = "budget";
  h.config.budget_bytes = 1 << 20;
  ASSERT_TRUE(h.Start().ok());
  const auto& layout = h.c->layout();
  const fl::Mask mask = h.c->mask();
  ASSERT_LT(mask.Numel(layout), fl::TotalNumel(layout));  // a strict subset is trained
  const int64_t d = h.Enroll("phone");
  v1::GetWorkRequest first;
  first.set_known_version(-1);
  auto w = h.c->GetWork(d, first);
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(w->kind(), v1::Work::TRAIN);
  auto all = fl::DecodeUpdate(w->values(), layout).value();
  EXPECT_EQ(all.mask, fl::Mask::Full(layout));
  EXPECT_EQ(all.update.delta, h.c->weights());
  EXPECT_EQ(UnpackMaskBits(w->mask(), layout).value(), mask);
  // Two updates fill the buffer: version 1 changes exactly the mask's rows.
  ASSERT_TRUE(h.Submit(h.MakeUpdate(d, 1)).ok());
  ASSERT_TRUE(h.Submit(h.MakeUpdate(d, 2)).ok());
  ASSERT_EQ(h.c->version(), 1);
  v1::GetWorkRequest since0;
  since0.set_known_version(0);
  auto w1 = h.c->GetWork(d, since0);
  ASSERT_TRUE(w1.ok());
  auto changed = fl::DecodeUpdate(w1->values(), layout).value();
  EXPECT_EQ(changed.mask, mask);
  EXPECT_EQ(changed.update.delta, fl::PackMasked(h.c->weights(), mask, layout));
  EXPECT_LT(w1->values().size(), w->values().size() / 2);
  v1::GetWorkRequest current;
  current.set_known_version(1);
  auto none = fl::DecodeUpdate(h.c->GetWork(d, current)->values(), layout).value();
  EXPECT_TRUE(none.update.delta.empty());
}

TEST(CoordinatorTest, HostileUpdatesAreRejectedWithoutChangingTheModel) {
  Harness h("hostile", fl::Algorithm::kFedBuff);
  h.config.strategy.mask = "budget";
  h.config.budget_bytes = 1 << 20;
  h.config.max_update_norm = 10;
  h.config.strategy.max_staleness = 0;
  ASSERT_TRUE(h.Start().ok());
  const int64_t d = h.Enroll("attacker");
  const int64_t other = h.Enroll("victim");
  // Move to version 1 so that a stale update can exist.
  ASSERT_TRUE(h.Submit(h.MakeUpdate(d, 1)).ok());
  ASSERT_TRUE(h.Submit(h.MakeUpdate(d, 2)).ok());
  ASSERT_EQ(h.c->version(), 1);
  const std::vector<float> before = h.c->weights();

  struct Case {
    const char* reason;
    v1::SubmitRequest request;
  };
  std::vector<Case> cases;
  {
    v1::SubmitRequest r = h.Request(h.MakeUpdate(d, 10));
    r.set_update(r.update().substr(0, r.update().size() / 2));
    cases.push_back({"malformed", r});  // truncated
  }
  {
    v1::SubmitRequest r = h.Request(h.MakeUpdate(d, 11));
    std::string b = r.update();
    b[b.size() / 2] ^= 0x40;
    r.set_update(b);
    cases.push_back({"malformed", r});  // a flipped bit: checksum
  }
  {
    // Shapes of another model.
    auto lenet = MakeModel("lenet5", 1).value();
    const auto other_layout = fl::LayoutOf(*lenet);
    fl::Update u = h.MakeUpdate(d, 12);
    u.delta.assign(static_cast<size_t>(fl::TotalNumel(other_layout)), 0.f);
    v1::SubmitRequest r;
    r.set_update_id(12);
    r.set_update(fl::EncodeUpdate(u, fl::Mask::Full(other_layout), other_layout, {false, false}));
    cases.push_back({"malformed", r});
  }
  {
    fl::Update u = h.MakeUpdate(d, 13);
    u.delta[5] = std::nanf("");
    cases.push_back({"malformed", h.Request(u)});
  }
  cases.push_back({"norm", h.Request(h.MakeUpdate(d, 14, 1.0f))});
  {
    fl::Update u = h.MakeUpdate(d, 15);
    u.base_version = 5;
    cases.push_back({"future version", h.Request(u)});
  }
  {
    fl::Update u = h.MakeUpdate(d, 16);
    u.base_version = 0;
    cases.push_back({"stale", h.Request(u)});
  }
  cases.push_back({"device mismatch", h.Request(h.MakeUpdate(other, 17))});
  {
    v1::SubmitRequest r = h.Request(h.MakeUpdate(d, 18));
    r.set_update_id(19);
    cases.push_back({"update id mismatch", r});
  }
  {
    fl::Update u = h.MakeUpdate(d, 20);
    u.num_samples = int64_t{1} << 40;
    cases.push_back({"sample count", h.Request(u)});
  }
  {
    fl::Update u = h.MakeUpdate(d, 21);
    u.loss = std::nanf("");
    cases.push_back({"statistics", h.Request(u)});
  }
  {
    // A dense update: rows outside the server's mask.
    const fl::Mask full = fl::Mask::Full(h.c->layout());
    fl::Update u = h.MakeUpdate(d, 22);
    u.delta.assign(static_cast<size_t>(full.Numel(h.c->layout())), 0.f);
    v1::SubmitRequest r;
    r.set_update_id(22);
    r.set_update(fl::EncodeUpdate(u, full, h.c->layout(), {false, false}));
    cases.push_back({"mask mismatch", r});
  }
  std::map<std::string, int64_t> want;
  for (const Case& c : cases) {
    ASSERT_EQ(h.c->GetWork(d, {})->kind(), v1::Work::TRAIN);  // a stale update ends the lease
    auto r = h.c->Submit(d, c.request);
    EXPECT_FALSE(r.ok()) << c.reason;
    ++want[c.reason];
    EXPECT_EQ(h.c->weights(), before) << c.reason;
    EXPECT_EQ(h.c->version(), 1) << c.reason;
  }
  EXPECT_EQ(h.c->rejected(), want);
  EXPECT_EQ(h.c->GetStatus().buffered(), 0);
  // An empty request is malformed too, and nothing crashed.
  EXPECT_FALSE(h.c->Submit(d, v1::SubmitRequest()).ok());
}

// Regression (issue 11): base_version INT64_MIN overflowed the staleness into a NaN weight, the
// model turned NaN, and evaluation counted NaN logits as right (100% accuracy).
TEST(CoordinatorTest, OnlyTheVersionLeasedToTheDeviceIsAccepted) {
  Harness h("versions", fl::Algorithm::kFtte);
  h.config.strategy.buffer = 1;
  ASSERT_TRUE(h.Start().ok());
  const int64_t d = h.Enroll("attacker");
  ASSERT_TRUE(h.Submit(h.MakeUpdate(d, 1)).ok());  // version 1
  ASSERT_TRUE(h.Submit(h.MakeUpdate(d, 2)).ok());  // version 2
  ASSERT_EQ(h.c->version(), 2);
  const std::vector<float> before = h.c->weights();
  auto expect_refused = [&](fl::Update u, const std::string& reason, StatusCode code) {
    auto r = h.Submit(u);
    ASSERT_FALSE(r.ok()) << reason;
    EXPECT_EQ(r.status().code(), code) << reason << ": " << r.status().ToString();
    EXPECT_EQ(h.c->rejected().at(reason) > 0, true) << reason;
    EXPECT_EQ(h.c->weights(), before) << reason;
    EXPECT_EQ(h.c->version(), 2) << reason;
  };
  fl::Update u = h.MakeUpdate(d, 10);
  u.base_version = std::numeric_limits<int64_t>::min();
  expect_refused(u, "future version", StatusCode::kInvalidArgument);
  u.base_version = -1;
  u.update_id = 11;
  expect_refused(u, "future version", StatusCode::kInvalidArgument);
  // A version the server did issue, but not to this lease (to dodge the staleness weight).
  u = h.MakeUpdate(d, 12);
  u.base_version = 1;
  expect_refused(u, "version not issued", StatusCode::kFailedPrecondition);
  // No work asked for: nothing to answer.
  const int64_t idle = h.Enroll("idle");
  expect_refused(h.MakeUpdate(idle, 13, 1e-3f, /*lease=*/false), "no lease",
                 StatusCode::kFailedPrecondition);
  // A lease that expired.
  u = h.MakeUpdate(idle, 14);
  h.now += h.config.lease_s + 1;
  expect_refused(u, "no lease", StatusCode::kFailedPrecondition);
  // An accepted update ends the lease: a second update of the same work is refused.
  u = h.MakeUpdate(d, 15);
  ASSERT_TRUE(h.Submit(u).ok());
  u.update_id = 16;
  auto again = h.Submit(u);
  EXPECT_EQ(again.status().code(), StatusCode::kFailedPrecondition);
  for (float w : h.c->weights()) ASSERT_TRUE(std::isfinite(w));
}

TEST(CoordinatorTest, UpdateOfOnlyTheChangedRowsEqualsTheDenseOne) {
  // Natural sparsity: rows a device did not change are left out of its upload.
  std::vector<float> result[2];
  int64_t bytes[2];
  for (int sparse = 0; sparse < 2; ++sparse) {
    Harness h(sparse ? "changed_rows_sparse" : "changed_rows_dense", fl::Algorithm::kFedBuff);
    h.config.strategy.buffer = 1;
    ASSERT_TRUE(h.Start().ok());
    const int64_t d = h.Enroll("phone");
    fl::Update u = h.MakeUpdate(d, 1);
    for (size_t i = 0; i < u.delta.size() / 2; ++i) u.delta[i] = 0;  // half the rows unchanged
    v1::SubmitRequest r = h.Request(u);
    if (sparse) r.set_update(fl::EncodeChangedRows(u, h.c->mask(), h.c->layout(), {}));
    bytes[sparse] = static_cast<int64_t>(r.update().size());
    ASSERT_TRUE(h.c->Submit(d, r).ok());
    result[sparse] = h.c->weights();
  }
  EXPECT_EQ(result[0], result[1]);
  EXPECT_LT(bytes[1], bytes[0] * 6 / 10);
}

TEST(CoordinatorTest, ReplayedUpdateIsAnsweredDuplicateAndAppliedOnce) {
  Harness h("replay", fl::Algorithm::kFedBuff);
  ASSERT_TRUE(h.Start().ok());
  const int64_t d = h.Enroll("phone");
  const fl::Update u = h.MakeUpdate(d, 42);
  auto first = h.Submit(u);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->outcome(), v1::SubmitResponse::ACCEPTED);
  auto again = h.Submit(u);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->outcome(), v1::SubmitResponse::DUPLICATE);
  EXPECT_EQ(h.c->GetStatus().buffered(), 1);  // buffer K = 2 is not full: applied once
  EXPECT_EQ(h.c->accepted(), 1);
}

// Regression (issue 11): a retry of an update was answered DUPLICATE while the original's record
// was still on its way to disk; a crash then lost an update the device was told was stored.
TEST(CoordinatorTest, DuplicateIsAnsweredOnlyOnceTheOriginalIsDurable) {
  Harness h("dup_durable", fl::Algorithm::kFtte);
  h.config.fsync = true;
  ASSERT_TRUE(h.Start().ok());
  const int64_t d = h.Enroll("phone");
  const fl::Update u = h.MakeUpdate(d, 7);
  std::atomic<bool> in_flush{false}, release{false}, duplicate_answered{false};
  h.c->store_for_test().flush_hook_for_test = [&] {
    in_flush = true;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  std::thread original([&] { EXPECT_TRUE(h.Submit(u).ok()); });
  while (!in_flush) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::thread retry([&] {
    auto r = h.Submit(u);
    EXPECT_TRUE(r.ok() && r->outcome() == v1::SubmitResponse::DUPLICATE);
    duplicate_answered = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(duplicate_answered) << "DUPLICATE acknowledged before the original was on disk";
  release = true;
  original.join();
  retry.join();
  EXPECT_TRUE(duplicate_answered);
  h.c->store_for_test().flush_hook_for_test = nullptr;
}

// Update i of the sequence: even ones leave the first half of the rows unchanged (and, with
// changed_rows, do not send them).
fl::Update SequenceUpdate(Harness& h, int64_t d, int i) {
  fl::Update u = h.MakeUpdate(d, i, 1e-3f * static_cast<float>(i));
  if (i % 2 == 0) std::fill(u.delta.begin(), u.delta.begin() + u.delta.size() / 2, 0.f);
  return u;
}

// Feeds the same sequence of updates to a coordinator; returns the final weights.
std::vector<float> RunSequence(Harness& h, int updates) {
  const int64_t d = h.Enroll("phone");
  for (int i = 1; i <= updates; ++i) EXPECT_TRUE(h.Submit(SequenceUpdate(h, d, i)).ok());
  return h.c->weights();
}

TEST(CoordinatorTest, CrashLosesNoAcceptedUpdateAndAppliesNoneTwice) {
  for (fl::Algorithm a : {fl::Algorithm::kFtte, fl::Algorithm::kFedAvg}) {
    SCOPED_TRACE(fl::AlgorithmName(a));
    // Reference: 7 updates without a crash.
    Harness ref(std::string("ref_") + fl::AlgorithmName(a), a);
    ASSERT_TRUE(ref.Start().ok());
    const std::vector<float> want = RunSequence(ref, 7);
    const int64_t want_version = ref.c->version();

    // The same 5 updates, then the process dies (no snapshot, no clean shutdown).
    Harness h(std::string("crash_") + fl::AlgorithmName(a), a);
    h.changed_rows = true;  // logged as received: over a subset of the mask
    ASSERT_TRUE(h.Start().ok());
    RunSequence(h, 5);
    const int64_t buffered = h.c->GetStatus().buffered();
    EXPECT_GT(buffered, 0);
    h.c.reset();
    ASSERT_TRUE(h.Start().ok());
    EXPECT_EQ(h.c->GetStatus().buffered(), buffered);  // the buffer survived
    EXPECT_EQ(h.c->accepted(), 5);
    // The device retries update 5 (its acknowledgement was lost) and goes on with 6 and 7.
    auto retry = h.Submit(SequenceUpdate(h, 0, 5));
    ASSERT_TRUE(retry.ok());
    EXPECT_EQ(retry->outcome(), v1::SubmitResponse::DUPLICATE);
    for (int i = 6; i <= 7; ++i) ASSERT_TRUE(h.Submit(SequenceUpdate(h, 0, i)).ok());
    EXPECT_EQ(h.c->version(), want_version);
    EXPECT_EQ(h.c->weights(), want);
    // And once more after a clean checkpoint.
    ASSERT_TRUE(h.c->Checkpoint().ok());
    h.c.reset();
    ASSERT_TRUE(h.Start().ok());
    EXPECT_EQ(h.c->weights(), want);
    EXPECT_EQ(h.c->accepted(), 7);
  }
}

// [privacy] in ftte serve: noise and accounting as in the simulator, the loads survive a crash
// (log replay) and a snapshot, Status reports the epsilon spent, and a device whose budget is
// spent is told it is done.
TEST(CoordinatorTest, PrivacyIsAccountedAcrossRestartsAndABudgetEndsADevice) {
  Harness h("privacy", fl::Algorithm::kFedAsync);
  h.config.strategy.dp_clip = 1;
  h.config.strategy.dp_noise_multiplier = 1;
  h.config.strategy.dp_delta = 1e-6;
  h.config.strategy.dp_max_load = 3;
  ASSERT_TRUE(h.Start().ok());
  const int64_t a = h.Enroll("a"), b = h.Enroll("b");
  for (int64_t i = 1; i <= 2; ++i) ASSERT_TRUE(h.Submit(h.MakeUpdate(a, i)).ok());
  ASSERT_TRUE(h.Submit(h.MakeUpdate(b, 10)).ok());
  v1::StatusResponse st = h.c->GetStatus();
  ASSERT_TRUE(st.has_privacy());
  EXPECT_EQ(st.privacy().max_load(), 2);
  EXPECT_DOUBLE_EQ(st.privacy().epsilon(), fl::GaussianEpsilon(1, 1e-6, 2));
  const std::vector<float> weights = h.c->weights();
  h.c.reset();  // a crash: the log is replayed, noise included
  ASSERT_TRUE(h.Start().ok());
  EXPECT_EQ(h.c->weights(), weights);
  EXPECT_EQ(h.c->GetStatus().privacy().max_load(), 2);
  ASSERT_TRUE(h.c->Checkpoint().ok());
  h.c.reset();
  ASSERT_TRUE(h.Start().ok());
  EXPECT_EQ(h.c->GetStatus().privacy().max_load(), 2);
  ASSERT_TRUE(h.Submit(h.MakeUpdate(a, 3)).ok());  // load 3: the budget
  auto w = h.c->GetWork(a, {});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->kind(), v1::Work::DONE);
  EXPECT_NE(w->message().find("privacy budget"), std::string::npos);
  EXPECT_EQ(h.c->GetWork(b, {})->kind(), v1::Work::TRAIN);  // the others go on
  // In a buffer, a device's second update of one aggregation costs 2^2: past a budget of 3 it
  // gets no work until the next aggregation (so an update sent anyway has no lease and is
  // refused, never acknowledged; Submit checks the budget too).
  Harness buf("privacy_buffer", fl::Algorithm::kFedBuff);
  buf.config.strategy.buffer = 3;
  buf.config.strategy.dp_clip = 1;
  buf.config.strategy.dp_noise_multiplier = 1;
  buf.config.strategy.dp_max_load = 3;
  ASSERT_TRUE(buf.Start().ok());
  const int64_t x = buf.Enroll("x"), y = buf.Enroll("y");
  ASSERT_EQ(buf.c->GetWork(y, {})->kind(), v1::Work::TRAIN);  // y is active too
  ASSERT_TRUE(buf.Submit(buf.MakeUpdate(x, 1)).ok());
  EXPECT_EQ(buf.c->GetWork(x, {})->kind(), v1::Work::WAIT);
  fl::Update again = buf.MakeUpdate(x, 2, 1e-3f, /*lease=*/false);
  auto refused = buf.Submit(again);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(buf.c->accepted(), 1);
  ASSERT_TRUE(h.c->Tick().ok());  // an evaluation: its log line carries the epsilon
  bool logged = false;
  for (const std::string& l : h.log) logged |= l.find("privacy epsilon") != std::string::npos;
  EXPECT_TRUE(logged);
}

// Adaptive clipping in ftte serve: the bound moves with the aggregations, Status reports it, and
// a crash (log replay) or a snapshot restores it exactly.
TEST(CoordinatorTest, AnAdaptiveClipBoundSurvivesRestarts) {
  Harness h("adaptive_clip", fl::Algorithm::kFedAsync);
  h.config.strategy.dp_clip = 10;
  h.config.strategy.dp_noise_multiplier = 1;
  h.config.strategy.dp_delta = 1e-6;
  h.config.strategy.dp_quantile = 0.5;
  ASSERT_TRUE(h.Start().ok());
  const int64_t a = h.Enroll("a");
  for (int64_t i = 1; i <= 3; ++i) ASSERT_TRUE(h.Submit(h.MakeUpdate(a, i)).ok());
  const double clip = h.c->GetStatus().privacy().clip();
  EXPECT_NE(clip, 10);
  const std::vector<float> weights = h.c->weights();
  h.c.reset();  // a crash: replay repeats the same bounds and noise
  ASSERT_TRUE(h.Start().ok());
  EXPECT_EQ(h.c->GetStatus().privacy().clip(), clip);
  EXPECT_EQ(h.c->weights(), weights);
  ASSERT_TRUE(h.c->Checkpoint().ok());
  h.c.reset();
  ASSERT_TRUE(h.Start().ok());
  EXPECT_EQ(h.c->GetStatus().privacy().clip(), clip);
}

// Distributed DP in ftte serve: the work tells each device its clip and noise share, an update
// longer than clip + noise allow is refused with the reason, and a noised one within is taken
// (its noise may exceed validation.max_update_norm).
TEST(CoordinatorTest, DistributedPrivacyTellsDevicesTheirNoiseShare) {
  Harness h("distributed_dp", fl::Algorithm::kFedBuff);
  h.config.strategy.buffer = 4;
  h.config.strategy.dp_clip = 1;
  h.config.strategy.dp_noise_multiplier = 2;
  h.config.strategy.dp_distributed = true;
  ASSERT_TRUE(h.Start().ok());
  const int64_t a = h.Enroll("a");
  auto w = h.c->GetWork(a, {});
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(w->kind(), v1::Work::TRAIN);
  EXPECT_EQ(w->hyperparameters().dp_clip(), 1);
  EXPECT_DOUBLE_EQ(w->hyperparameters().dp_noise_stddev(), 2.0 * 1 / 2);  // z C / sqrt(K)
  auto refused = h.Submit(h.MakeUpdate(a, 1, 2.0f, /*lease=*/false));     // norm 2 sqrt(n)
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("distributed privacy"), std::string::npos)
      << refused.status().message();
  h.c.reset();
  h.config.max_update_norm = 1;  // below the noise's norm: distributed DP's bound applies
  ASSERT_TRUE(h.Start().ok());
  fl::Update noised = h.MakeUpdate(a, 2, 0.0f);
  fl::PrivatizeUpdate(&noised.delta, 1, 1.0, fl::DerivedNoiseKey(5));
  ASSERT_TRUE(h.Submit(noised).ok());
  EXPECT_EQ(h.c->accepted(), 1);
}

// [model] init and [eval] text: a language-model federation from a checkpoint, with errors that
// name the key and the fix before anything starts.
TEST(ServeConfigTest, ALanguageModelStartsFromItsCheckpointAndHeldOutText) {
  const std::string dir = ::testing::TempDir() + "ftte_serve_lm_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/heldout");
  std::filesystem::create_directories(dir + "/empty");
  auto tok = data::Tokenizer::Train(data::TokenizerKind::kWord, {"a b c a b .\n"}, 50);
  ASSERT_TRUE(tok.ok());
  auto model = MakeModel("lstm_lm:vocab=" + std::to_string(tok->size()) + ",context=4", 3);
  ASSERT_TRUE(model.ok());
  const std::string ckpt = dir + "/lm.safetensors";
  ASSERT_TRUE(data::SaveLanguageModel(*model.value(), tok.value(), ckpt).ok());
  std::ofstream(dir + "/heldout/u") << "a b c .\nb a .\n";
  std::ofstream(dir + "/empty/u") << "\n";
  const std::vector<std::string> base = {"auth.enroll_key=k", "server.insecure=true"};
  auto load = [&](std::vector<std::string> more) {
    std::vector<std::string> all = base;
    all.insert(all.end(), more.begin(), more.end());
    return LoadServeConfig("", all);
  };
  auto c = load({"model.init=" + ckpt, "eval.text=" + dir + "/heldout"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto d = LoadServeData(&c.value());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(c->model, model.value()->name());
  EXPECT_EQ(d->initial_weights, fl::GetWeights(*model.value()));
  EXPECT_EQ(d->eval.labels_per_sample, 4);
  EXPECT_GT(d->eval.size, 0);

  auto r = load({"model.init=" + ckpt});
  EXPECT_NE(r.status().message().find("needs [eval] text"), std::string::npos);
  r = load({"eval.text=" + dir});
  EXPECT_NE(r.status().message().find("needs [model] init"), std::string::npos);
  c = load({"model.init=" + ckpt, "eval.text=" + dir + "/heldout", "model.name=lstm_lm"});
  ASSERT_TRUE(c.ok());
  d = LoadServeData(&c.value());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("is not the init checkpoint's"), std::string::npos)
      << d.status().message();
  c = load({"model.init=" + ckpt, "eval.text=" + dir + "/empty"});
  d = LoadServeData(&c.value());
  EXPECT_NE(d.status().message().find("holds no words"), std::string::npos) << d.status().message();
  c = load({"model.init=" + dir + "/missing", "eval.text=" + dir + "/heldout"});
  d = LoadServeData(&c.value());
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
  EXPECT_NE(d.status().message().find("[model] init"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(ServeConfigTest, PrivacySettingsAreCheckedBeforeStart) {
  const std::vector<std::string> base = {"auth.enroll_key=k", "server.insecure=true",
                                         "strategy.algorithm=fedbuff", "privacy.clip=1",
                                         "privacy.noise_multiplier=1.5"};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> all = base;
    all.insert(all.end(), more.begin(), more.end());
    return LoadServeConfig("", all);
  };
  auto ok =
      with({"privacy.noise_multiplier=1.5", "privacy.delta=1e-7", "privacy.target_epsilon=8"});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->strategy.dp_clip, 1);
  EXPECT_EQ(ok->strategy.dp_max_load, fl::MaxGaussianLoad(1.5, 1e-7, 8));
  EXPECT_GT(ok->strategy.dp_max_load, 0);
  auto r = with({"privacy.noise_multiplier=0"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("gives no privacy"), std::string::npos);
  r = with({"privacy.target_epsilon=0.001"});
  EXPECT_NE(r.status().message().find("below what one update costs"), std::string::npos)
      << r.status().message();
  r = with({"strategy.clip_multiplier=3"});
  EXPECT_NE(r.status().message().find("privacy"), std::string::npos) << r.status().message();
  auto adaptive = with({"privacy.adaptive_quantile=0.5", "privacy.adaptive_rate=0.1"});
  ASSERT_TRUE(adaptive.ok()) << adaptive.status().ToString();
  EXPECT_EQ(adaptive->strategy.dp_quantile, 0.5);
  EXPECT_EQ(adaptive->strategy.dp_quantile_rate, 0.1);
  auto calibrated = with({"privacy.noise_multiplier=0", "privacy.target_epsilon=8",
                          "privacy.updates_per_device=30", "privacy.delta=1e-7"});
  ASSERT_TRUE(calibrated.ok()) << calibrated.status().ToString();
  EXPECT_EQ(calibrated->strategy.dp_noise_multiplier, fl::NoiseForLoad(1e-7, 8, 30));
  EXPECT_GE(calibrated->strategy.dp_max_load, 30);
  r = with({"privacy.updates_per_device=30"});  // noise 1.5 given too
  EXPECT_NE(r.status().message().find("set noise_multiplier = 0"), std::string::npos);
  auto distributed = with({"privacy.mode=distributed"});
  ASSERT_TRUE(distributed.ok()) << distributed.status().ToString();
  EXPECT_TRUE(distributed->strategy.dp_distributed);
  r = with({"privacy.mode=local"});
  EXPECT_NE(r.status().message().find("not central or distributed"), std::string::npos);
  r = with({"privacy.mode=distributed", "privacy.adaptive_quantile=0.5"});
  EXPECT_NE(r.status().message().find("distributed mode needs"), std::string::npos);
  r = with({"privacy.adaptive_quantile=0.5", "privacy.quantile_noise=0.5"});
  EXPECT_NE(r.status().message().find("quantile_noise"), std::string::npos) << r.status().message();
}

// Regression (issue 11): one update within every fixed bound (norm 999 of 1,000, the maximum
// sample count) took a trained model from 75% to 9%. With the robust bounds on, it counts as
// much as a few honest ones, and the bounds' memory survives a restart.
TEST(CoordinatorTest, RobustBoundsLimitAnInBoundsUpdateAcrossRestarts) {
  auto run = [](Harness& h, bool restart) {
    h.config.strategy.clip_multiplier = 3;
    h.config.strategy.sample_cap_multiplier = 4;
    EXPECT_TRUE(h.Start().ok());
    const int64_t d = h.Enroll("phone");
    for (int64_t i = 1; i <= 12; ++i) EXPECT_TRUE(h.Submit(h.MakeUpdate(d, i)).ok());
    if (restart) {
      EXPECT_TRUE(h.c->Checkpoint().ok());
      h.c.reset();
      EXPECT_TRUE(h.Start().ok());
    }
    const std::vector<float> before = h.c->weights();
    const double n = static_cast<double>(h.c->mask().Numel(h.c->layout()));
    for (int64_t i = 13; i <= 14; ++i) {  // one attack and one honest update: a full buffer
      fl::Update u = h.MakeUpdate(d, i, i == 13 ? static_cast<float>(999 / std::sqrt(n)) : 1e-3f);
      if (i == 13) u.num_samples = h.config.max_samples_per_update;
      EXPECT_TRUE(h.Submit(u).ok());
    }
    double moved = 0;
    const std::vector<float> after = h.c->weights();  // a copy per call
    for (size_t k = 0; k < before.size(); ++k) {
      const double x = after[k] - before[k];
      moved += x * x;
    }
    return std::make_pair(std::sqrt(moved), 1e-3 * std::sqrt(n));  // and one honest norm
  };
  Harness straight("robust", fl::Algorithm::kFedBuff),
      restarted("robust_r", fl::Algorithm::kFedBuff);
  const auto [moved, honest] = run(straight, false);
  EXPECT_LE(moved, 3 * honest);  // clipped to 3x the median norm, then averaged with one honest
  EXPECT_EQ(run(restarted, true).first, moved);
  EXPECT_EQ(restarted.c->weights(), straight.c->weights());
}

// Regression (issue 11): the snapshot kept every accepted update id forever. It keeps the last
// few per device (a retry can only be of those) and a count.
TEST(CoordinatorTest, TheSnapshotKeepsABoundedIdWindowPerDeviceAndACount) {
  Harness h("idwindow", fl::Algorithm::kFedBuff);
  ASSERT_TRUE(h.Start().ok());
  const int64_t d = h.Enroll("phone");
  for (int64_t i = 1; i <= 20; ++i) ASSERT_TRUE(h.Submit(h.MakeUpdate(d, i)).ok());
  ASSERT_TRUE(h.c->Checkpoint().ok());
  state::Snapshot snap;
  std::ifstream in(h.dir + "/snapshot.pb", std::ios::binary);
  ASSERT_TRUE(snap.ParseFromIstream(&in));
  ASSERT_EQ(snap.devices_size(), 1);
  EXPECT_EQ(snap.devices(0).accepted_count(), 20);
  EXPECT_EQ(snap.devices(0).accepted_update_ids_size(), 8);
  EXPECT_EQ(snap.devices(0).accepted_update_ids(7), 20);
  h.c.reset();
  ASSERT_TRUE(h.Start().ok());
  EXPECT_EQ(h.c->accepted(), 20);
  // The last update, retried after the restart, is still recognised.
  fl::Update last = h.MakeUpdate(d, 20, 1e-3f, /*lease=*/false);
  auto retry = h.Submit(last);
  ASSERT_TRUE(retry.ok()) << retry.status().ToString();
  EXPECT_EQ(retry->outcome(), v1::SubmitResponse::DUPLICATE);
}

TEST(CoordinatorTest, StateOfAnotherFederationIsRefused) {
  Harness h("other", fl::Algorithm::kFedBuff);
  ASSERT_TRUE(h.Start().ok());
  h.c.reset();
  h.config.strategy.algorithm = fl::Algorithm::kFtte;
  Status s = h.Start();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("holds a fedbuff federation"), std::string::npos) << s.message();
}

TEST(CoordinatorTest, FedAvgRoundWaitsForItsDevicesOrTheDeadline) {
  Harness h("fedavg", fl::Algorithm::kFedAvg);
  h.config.strategy.concurrency = 2;
  h.config.strategy.round_deadline_s = 10;
  ASSERT_TRUE(h.Start().ok());
  const int64_t a = h.Enroll("a"), b = h.Enroll("b"), c = h.Enroll("c");
  EXPECT_EQ(h.c->GetWork(a, {})->kind(), v1::Work::TRAIN);
  EXPECT_EQ(h.c->GetWork(b, {})->kind(), v1::Work::TRAIN);
  EXPECT_EQ(h.c->GetWork(c, {})->kind(), v1::Work::WAIT);  // the round is full
  ASSERT_TRUE(h.Submit(h.MakeUpdate(a, 1)).ok());
  EXPECT_EQ(h.c->version(), 0);
  ASSERT_TRUE(h.Submit(h.MakeUpdate(b, 2)).ok());
  EXPECT_EQ(h.c->version(), 1);
  // Round 2: only one of two devices reports; the deadline closes it.
  EXPECT_EQ(h.c->GetWork(c, {})->kind(), v1::Work::TRAIN);
  EXPECT_EQ(h.c->GetWork(a, {})->kind(), v1::Work::TRAIN);
  ASSERT_TRUE(h.Submit(h.MakeUpdate(c, 3)).ok());
  h.now = 11;
  ASSERT_TRUE(h.c->Tick().ok());
  EXPECT_EQ(h.c->version(), 2);
  // a's late update is from round 2: stale.
  fl::Update late = h.MakeUpdate(a, 4);
  late.base_version = 1;
  EXPECT_EQ(h.Submit(late).status().code(), StatusCode::kFailedPrecondition);
  // The deadline's aggregation is replayed after a crash.
  h.c.reset();
  ASSERT_TRUE(h.Start().ok());
  EXPECT_EQ(h.c->version(), 2);
}

TEST(CoordinatorTest, LeasesLimitConcurrencyAndExpire) {
  Harness h("lease", fl::Algorithm::kFtte);
  h.config.strategy.concurrency = 1;
  h.config.lease_s = 5;
  ASSERT_TRUE(h.Start().ok());
  const int64_t a = h.Enroll("a"), b = h.Enroll("b");
  EXPECT_EQ(h.c->GetWork(a, {})->kind(), v1::Work::TRAIN);
  EXPECT_EQ(h.c->GetWork(b, {})->kind(), v1::Work::WAIT);
  h.now = 3;
  h.c->Heartbeat(a);  // renews a's lease until 8
  h.now = 6;
  EXPECT_EQ(h.c->GetWork(b, {})->kind(), v1::Work::WAIT);
  h.now = 9;  // a went silent
  EXPECT_EQ(h.c->GetWork(b, {})->kind(), v1::Work::TRAIN);
}

// Regression (issue 11): one device filled a whole buffer. Its share of one aggregation is
// capped (max(ceil(max_share * K), ceil(K / active devices))); at the cap it waits for the next
// aggregation, and a lone device can still fill the buffer alone.
TEST(CoordinatorTest, OneDeviceGetsAtMostItsShareOfAnAggregation) {
  Harness h("share", fl::Algorithm::kFtte);
  h.config.strategy.concurrency = 10;
  h.config.strategy.buffer = 10;
  ASSERT_TRUE(h.Start().ok());
  std::vector<int64_t> ids;
  for (const char* name : {"a", "b", "c", "d"}) ids.push_back(h.Enroll(name));
  for (int64_t d : ids) ASSERT_EQ(h.c->GetWork(d, {})->kind(), v1::Work::TRAIN);  // all active
  const int64_t a = ids[0];
  int64_t id = 100;
  // a's first job was leased above; it may have 3 updates (ceil(0.3 * 10), ceil(10 / 4)) in it.
  auto submit = [&](int64_t d, bool lease) {
    EXPECT_TRUE(h.Submit(h.MakeUpdate(d, ++id, 1e-3f, lease)).ok());
  };
  submit(a, false);
  submit(a, true);
  submit(a, true);
  auto w = h.c->GetWork(a, {});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->kind(), v1::Work::WAIT);
  EXPECT_NE(w->message().find("validation.max_share"), std::string::npos) << w->message();
  // The others fill the aggregation; then a gets work again.
  for (int64_t d : {ids[1], ids[2], ids[3]}) submit(d, false);
  for (int i = 0; i < 3; ++i) submit(ids[1 + i % 3], true);
  EXPECT_EQ(h.c->version(), 0);
  submit(ids[1], true);  // the tenth update
  EXPECT_EQ(h.c->version(), 1);
  EXPECT_EQ(h.c->GetWork(a, {})->kind(), v1::Work::TRAIN);

  // Alone (the others silent for lease_s), a device fills an aggregation by itself.
  Harness alone("share_alone", fl::Algorithm::kFtte);
  alone.config.strategy.buffer = 3;
  ASSERT_TRUE(alone.Start().ok());
  const int64_t x = alone.Enroll("x");
  alone.Enroll("y");  // enrolled, never asks for work
  for (int i = 1; i <= 3; ++i) EXPECT_TRUE(alone.Submit(alone.MakeUpdate(x, i)).ok());
  EXPECT_EQ(alone.c->version(), 1);
}

TEST(CoordinatorTest, RateCapSpacesOneDevicesJobs) {
  Harness h("rate", fl::Algorithm::kFtte);
  h.config.min_interval_s = 10;
  ASSERT_TRUE(h.Start().ok());
  const int64_t a = h.Enroll("a");
  ASSERT_TRUE(h.Submit(h.MakeUpdate(a, 1)).ok());  // leased at t = 0
  h.now = 4;
  auto w = h.c->GetWork(a, {});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->kind(), v1::Work::WAIT);
  EXPECT_EQ(w->retry_after_ms(), 6000);
  EXPECT_NE(w->message().find("validation.min_interval_s"), std::string::npos);
  h.now = 10;
  EXPECT_EQ(h.c->GetWork(a, {})->kind(), v1::Work::TRAIN);
  // Asking again for the job it holds is not a new job.
  h.now = 11;
  EXPECT_EQ(h.c->GetWork(a, {})->kind(), v1::Work::TRAIN);
}

// Regression (issue 12): stop.max_versions = 2 stopped at version 5 (the next evaluation).
TEST(CoordinatorTest, MaxVersionsStopsAtThatVersionWhateverTheEvaluationGrid) {
  Harness h("maxversions", fl::Algorithm::kFedBuff);
  h.config.eval_every = 5;
  h.config.max_versions = 2;
  h.config.target_accuracy = 0;
  ASSERT_TRUE(h.Start().ok());
  const int64_t d = h.Enroll("phone");
  ASSERT_TRUE(h.c->Tick().ok());  // evaluates version 0; the next evaluation would be at 5
  for (int64_t i = 1; i <= 4; ++i) {
    ASSERT_TRUE(h.Submit(h.MakeUpdate(d, i)).ok());
    ASSERT_TRUE(h.c->Tick().ok());
    EXPECT_EQ(h.c->done(), i == 4) << i;
  }
  ASSERT_EQ(h.c->version(), 2);
  auto w = h.c->GetWork(d, {});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->kind(), v1::Work::DONE);
}

TEST(CoordinatorTest, EvaluationEndsTheFederationAtTheTarget) {
  Harness h("target", fl::Algorithm::kFedBuff);
  h.config.target_accuracy = 0.01;  // any model beats 1% on 10 classes
  ASSERT_TRUE(h.Start().ok());
  ASSERT_TRUE(h.c->Tick().ok());
  EXPECT_TRUE(h.c->done());
  const int64_t d = h.Enroll("late");
  EXPECT_EQ(h.c->GetWork(d, {})->kind(), v1::Work::DONE);
  EXPECT_EQ(h.c->GetStatus().evaluations_size(), 1);
}

// Secure aggregation (docs/secure-aggregation.md): devices hand updates in through cohorts.

// A member's update with a signature no sum of several shares: delta[j] = v * (1 + slope *
// (j mod 6)); members differ in slope, and a weighted sum's slope lies strictly between theirs.
std::vector<float> Signature(int64_t n, float v, float slope) {
  std::vector<float> d(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) d[j] = v * (1 + slope * static_cast<float>(j % 6));
  return d;
}

// True if `bytes` holds 6 consecutive little-endian floats f with f[k] = f[0] * (1 + slope k)
// and f[0] != 0: a (scaled) piece of a Signature of that slope.
bool HoldsSignature(const std::string& bytes, float slope) {
  constexpr int period = 6;
  const size_t n = bytes.size() / 4;
  for (size_t shift = 0; shift < 4; ++shift) {
    std::vector<float> f((bytes.size() - shift) / 4);
    if (f.empty()) continue;
    std::memcpy(f.data(), bytes.data() + shift, 4 * f.size());
    for (size_t i = 0; i + static_cast<size_t>(period) <= f.size() && i < n; ++i) {
      if (!(std::abs(f[i]) > 1e-12f) || !std::isfinite(f[i])) continue;
      bool all = true;
      for (int k = 1; all && k < period; ++k) {
        all = std::abs(f[i + k] / f[i] - (1 + slope * static_cast<float>(k))) < 1e-4f;
      }
      if (all) return true;
    }
  }
  return false;
}

std::string ReadAll(const std::string& dir) {
  std::string all;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    all += std::string(std::istreambuf_iterator<char>(in), {});
  }
  return all;
}

struct SecureDevice {
  int64_t device = -1;
  std::unique_ptr<SecureHandIn> hand_in;
  SecureHandIn::State state = SecureHandIn::State::kRunning;
  bool silent = false;    // has left (sends nothing more)
  int leave_before = -1;  // leaves instead of sending this round's message (2: masked input)
  std::string masked;     // its masked input, as sent
};

void SecureHarness(Harness& h, int64_t cohort) {
  h.config.secure = true;
  h.config.strategy.secure_cohort = cohort;
  h.config.secure_round_timeout_s = 5;
}

// Enrols `n` devices, leases each a job and prepares its hand-in of a Signature update (member i:
// value 0.01 * (i + 1), slope 0.1 * (i + 1)).
std::vector<SecureDevice> SecureCohort(Harness& h, int n, const std::string& prefix, int64_t id0) {
  std::vector<SecureDevice> out;
  for (int i = 0; i < n; ++i) {
    SecureDevice m;
    m.device = h.Enroll(prefix + std::to_string(i));
    fl::Update u = h.MakeUpdate(m.device, id0 + i);
    u.delta = Signature(static_cast<int64_t>(u.delta.size()), 0.01f * static_cast<float>(i + 1),
                        0.1f * static_cast<float>(i + 1));
    m.hand_in = std::make_unique<SecureHandIn>(u, h.c->mask(), h.c->layout(),
                                               fl::secagg::DerivedSecret(7, id0 + i));
    out.push_back(std::move(m));
  }
  return out;
}

int RoundOf(const v1::SecureStepRequest& r) {
  switch (r.message_case()) {
    case v1::SecureStepRequest::kAdvert:
      return 0;
    case v1::SecureStepRequest::kShares:
      return 1;
    case v1::SecureStepRequest::kMaskedInput:
      return 2;
    case v1::SecureStepRequest::kUnmask:
      return 3;
    default:
      return -1;
  }
}

// Every running member sends its request once; repeated until none is running or `calls`.
void RunSecure(Harness& h, std::vector<SecureDevice>& ms, int calls = 64) {
  for (int call = 0; call < calls; ++call) {
    bool running = false;
    for (SecureDevice& m : ms) {
      if (m.silent || m.state != SecureHandIn::State::kRunning) continue;
      const v1::SecureStepRequest& req = m.hand_in->request();
      if (m.leave_before >= 0 && RoundOf(req) == m.leave_before) {
        m.silent = true;
        continue;
      }
      if (req.has_masked_input()) m.masked = req.masked_input();
      auto r = h.c->SecureStep(m.device, req);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      auto st = m.hand_in->OnReply(*r);
      ASSERT_TRUE(st.ok()) << st.status().ToString();
      m.state = *st;
      running = running || m.state == SecureHandIn::State::kRunning;
    }
    if (!running) return;
  }
}

// The plain buffer's result for the same updates: what the cohort's sum must reproduce.
std::vector<float> PlainResult(const std::string& name, int n, int64_t buffer) {
  Harness p(name, fl::Algorithm::kFedBuff);
  p.config.strategy.buffer = buffer;
  EXPECT_TRUE(p.Start().ok());
  for (int i = 0; i < n; ++i) {
    const int64_t d = p.Enroll("plain" + std::to_string(i));
    fl::Update u = p.MakeUpdate(d, 100 + i);
    u.delta = Signature(static_cast<int64_t>(u.delta.size()), 0.01f * static_cast<float>(i + 1),
                        0.1f * static_cast<float>(i + 1));
    EXPECT_TRUE(p.Submit(u).ok());
  }
  EXPECT_EQ(p.c->version(), 1);
  return p.c->weights();
}

TEST(CoordinatorSecureTest, ACohortsSumIsAppliedAndNoSingleUpdateIsEverStored) {
  Harness h("secure_sum", fl::Algorithm::kFedBuff);
  h.config.strategy.buffer = 3;
  SecureHarness(h, 3);
  ASSERT_TRUE(h.Start().ok());
  std::vector<SecureDevice> ms = SecureCohort(h, 3, "phone", 100);
  // Work says how to hand in; a plain submission is refused.
  EXPECT_TRUE(h.c->GetWork(ms[0].device, {})->secure_aggregation());
  fl::Update plain = h.MakeUpdate(ms[0].device, 99, 1e-3f, false);
  auto refused = h.Submit(plain);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("SecureStep"), std::string::npos);
  RunSecure(h, ms);
  for (const SecureDevice& m : ms) {
    EXPECT_EQ(m.state, SecureHandIn::State::kAccepted) << m.hand_in->message();
    EXPECT_FALSE(m.masked.empty());
  }
  EXPECT_EQ(h.c->version(), 1);
  // The same as the plain buffer of those updates, up to the fixed point's resolution.
  const std::vector<float> want = PlainResult("secure_sum_plain", 3, 3), got = h.c->weights();
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::abs(double{got[i]} - want[i]));
  EXPECT_LT(worst, 1e-6);
  v1::StatusResponse st = h.c->GetStatus();
  EXPECT_EQ(st.secure_aggregation().cohorts(), 1);
  EXPECT_EQ(st.secure_aggregation().left_out(), 0);
  EXPECT_EQ(st.accepted(), 3);
  // Neither the state directory (log, then snapshot) nor the log lines hold one member's update
  // or its masked input; the signatures are there to be found if they were.
  const std::vector<float> probe = Signature(64, 0.02f, 0.2f);
  ASSERT_TRUE(
      HoldsSignature("xy" + std::string(reinterpret_cast<const char*>(probe.data()), 256), 0.2f));
  for (int pass = 0; pass < 2; ++pass) {
    const std::string stored = ReadAll(h.dir);
    for (int i = 0; i < 3; ++i) {
      EXPECT_FALSE(HoldsSignature(stored, 0.1f * static_cast<float>(i + 1)))
          << "member " << i << ", pass " << pass;
      EXPECT_EQ(stored.find(ms[i].masked.substr(0, 64)), std::string::npos);
    }
    ASSERT_TRUE(h.c->Checkpoint().ok());
  }
  std::string lines;
  for (const std::string& l : h.log) lines += l + "\n";
  EXPECT_NE(lines.find("formed: 3 members"), std::string::npos) << lines;
  EXPECT_EQ(lines.find("0.01"), std::string::npos) << lines;
  // A retried last call (its reply lost) is acknowledged again, also after a restart.
  auto again = h.c->SecureStep(ms[1].device, ms[1].hand_in->request());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->kind(), v1::SecureStepResponse::ACCEPTED);
  h.c.reset();
  ASSERT_TRUE(h.Start().ok());
  EXPECT_EQ(h.c->weights(), got);
  again = h.c->SecureStep(ms[2].device, ms[2].hand_in->request());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->kind(), v1::SecureStepResponse::ACCEPTED);
  // A member's next job joins the next cohort.
  fl::Update next = h.MakeUpdate(ms[0].device, 500);
  SecureHandIn hand_in(next, h.c->mask(), h.c->layout(), fl::secagg::DerivedSecret(7, 500));
  auto joined = h.c->SecureStep(ms[0].device, hand_in.request());
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  EXPECT_EQ(joined->kind(), v1::SecureStepResponse::WAIT);
}

TEST(CoordinatorSecureTest, DropoutsLeaveTheSurvivorsSumAndTooManyAbortTheCohort) {
  Harness h("secure_drop", fl::Algorithm::kFedBuff);
  h.config.strategy.buffer = 3;
  SecureHarness(h, 4);  // complete graph of 4: threshold 2
  ASSERT_TRUE(h.Start().ok());
  std::vector<SecureDevice> ms = SecureCohort(h, 4, "a", 100);
  ms[3].leave_before = 2;  // shares its keys, then leaves before its masked input
  RunSecure(h, ms);
  EXPECT_EQ(h.c->version(), 0);  // the round waits for the member until its deadline
  h.now += 6;
  ASSERT_TRUE(h.c->Tick().ok());
  RunSecure(h, ms);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ms[i].state, SecureHandIn::State::kAccepted) << i;
  EXPECT_EQ(h.c->version(), 1);
  auto late = h.c->SecureStep(ms[3].device, ms[3].hand_in->request());
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->kind(), v1::SecureStepResponse::LEFT_OUT);
  EXPECT_NE(late->message().find("missed round 'masked inputs'"), std::string::npos)
      << late->message();
  EXPECT_EQ(h.c->GetStatus().secure_aggregation().left_out(), 1);
  EXPECT_EQ(h.c->GetStatus().accepted(), 3);

  // Three of four leave: one survivor is below the threshold, so nothing is released.
  h.now += 1;
  std::vector<SecureDevice> next = SecureCohort(h, 4, "b", 200);
  for (int i = 1; i < 4; ++i) next[i].leave_before = 2;
  RunSecure(h, next);
  h.now += 6;
  ASSERT_TRUE(h.c->Tick().ok());
  RunSecure(h, next);
  EXPECT_EQ(next[0].state, SecureHandIn::State::kLeftOut);
  EXPECT_NE(next[0].hand_in->message().find("aborted"), std::string::npos)
      << next[0].hand_in->message();
  const v1::StatusResponse st = h.c->GetStatus();
  EXPECT_EQ(h.c->version(), 1);
  EXPECT_EQ(st.secure_aggregation().aborted(), 1);
  EXPECT_EQ(st.secure_aggregation().cohorts(), 1);
  EXPECT_EQ(st.secure_aggregation().left_out(), 5);
  EXPECT_EQ(st.accepted(), 3);
  // Their devices are free to train again.
  EXPECT_EQ(h.c->GetWork(next[0].device, {})->kind(), v1::Work::TRAIN);
}

TEST(CoordinatorSecureTest, ARestartDropsTheCohortsInFlightAndNeverUnmasksThem) {
  Harness h("secure_crash", fl::Algorithm::kFedBuff);
  h.config.strategy.buffer = 3;
  h.config.strategy.concurrency = 6;
  SecureHarness(h, 3);
  ASSERT_TRUE(h.Start().ok());
  std::vector<SecureDevice> first = SecureCohort(h, 3, "a", 100);
  RunSecure(h, first);
  ASSERT_EQ(h.c->version(), 1);
  const std::vector<float> applied = h.c->weights();
  // The second cohort gets as far as every masked input: one call before unmasking.
  std::vector<SecureDevice> second = SecureCohort(h, 3, "b", 200);
  for (SecureDevice& m : second) m.leave_before = 3;
  RunSecure(h, second);
  for (const SecureDevice& m : second) ASSERT_FALSE(m.masked.empty());
  h.c.reset();  // kill -9
  ASSERT_TRUE(h.Start().ok());
  EXPECT_EQ(h.c->version(), 1);
  EXPECT_EQ(h.c->weights(), applied);
  const std::string stored = ReadAll(h.dir);
  for (const SecureDevice& m : second) {
    EXPECT_EQ(stored.find(m.masked.substr(0, 64)), std::string::npos);
    v1::SecureStepRequest poll = m.hand_in->request();
    poll.clear_message();
    auto r = h.c->SecureStep(m.device, poll);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->kind(), v1::SecureStepResponse::LEFT_OUT);
    EXPECT_NE(r->message().find("restarted"), std::string::npos) << r->message();
  }
  for (const SecureDevice& m : first) {  // acknowledged before the crash: still in
    auto r = h.c->SecureStep(m.device, m.hand_in->request());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->kind(), v1::SecureStepResponse::ACCEPTED);
  }
  EXPECT_EQ(h.c->GetStatus().accepted(), 3);
}

TEST(CoordinatorSecureTest, HandInsThatBreakTheRulesAreRefused) {
  Harness h("secure_hostile", fl::Algorithm::kFedBuff);
  h.config.strategy.buffer = 3;
  SecureHarness(h, 3);
  ASSERT_TRUE(h.Start().ok());
  const int64_t a = h.Enroll("a");
  auto join = [&](int64_t update_id, int64_t base_version) {
    v1::SecureStepRequest r;
    r.set_update_id(update_id);
    r.mutable_join()->set_base_version(base_version);
    r.mutable_join()->set_num_samples(16);
    return h.c->SecureStep(a, r);
  };
  // No work outstanding; then a version the server did not issue to it.
  EXPECT_NE(join(1, 0).status().message().find("no work is outstanding"), std::string::npos);
  ASSERT_EQ(h.c->GetWork(a, {})->kind(), v1::Work::TRAIN);
  EXPECT_NE(join(1, 5).status().message().find("the model is at 0"), std::string::npos);
  auto ok = join(1, 0);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->kind(), v1::SecureStepResponse::WAIT);
  EXPECT_TRUE(join(1, 0).ok());  // the same join again: a poll
  auto second = join(2, 0);      // another update while the first is in flight
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("one update per device"), std::string::npos);
  // Fill the cohort, then send messages that break it.
  std::vector<SecureDevice> others = SecureCohort(h, 2, "o", 10);
  for (SecureDevice& m : others) m.leave_before = 1;
  RunSecure(h, others);
  v1::SecureStepRequest poll;
  poll.set_update_id(1);
  auto step = h.c->SecureStep(a, poll);
  ASSERT_TRUE(step.ok());
  ASSERT_EQ(step->kind(), v1::SecureStepResponse::ADVERTISE);
  const uint64_t cohort = step->cohort().id();
  v1::SecureStepRequest bad = poll;
  bad.set_cohort_id(cohort + 1);
  bad.mutable_advert()->set_encryption_key(std::string(32, 'k'));
  bad.mutable_advert()->set_mask_key(std::string(32, 'm'));
  EXPECT_NE(h.c->SecureStep(a, bad).status().message().find("is for cohort"), std::string::npos);
  bad.set_cohort_id(cohort);
  bad.mutable_advert()->set_mask_key("short");
  EXPECT_NE(h.c->SecureStep(a, bad).status().message().find("32 bytes"), std::string::npos);
  v1::SecureStepRequest early = poll;
  early.set_cohort_id(cohort);
  early.set_masked_input(std::string(16, '\0'));
  EXPECT_NE(h.c->SecureStep(a, early).status().message().find("early"), std::string::npos);
  // A device outside any hand-in learns so, and nothing it sends is taken.
  const int64_t stranger = h.Enroll("stranger");
  v1::SecureStepRequest forged = bad;
  forged.set_update_id(77);
  auto r = h.c->SecureStep(stranger, forged);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind(), v1::SecureStepResponse::LEFT_OUT);
  const auto rejected = h.c->rejected();
  EXPECT_GE(rejected.at("secure: second update"), 1);
  EXPECT_GE(rejected.at("secure: cohort"), 1);
}

// Distributed privacy inside the sum: each member's device is charged for its aggregation and the
// epsilon is reported, as for plain updates.
TEST(CoordinatorSecureTest, DistributedPrivacyComposesWithTheCohortSum) {
  Harness h("secure_dp", fl::Algorithm::kFedBuff);
  h.config.strategy.buffer = 3;
  h.config.strategy.dp_clip = 1;
  h.config.strategy.dp_noise_multiplier = 1;
  h.config.strategy.dp_delta = 1e-5;
  h.config.strategy.dp_distributed = true;
  SecureHarness(h, 3);
  ASSERT_TRUE(h.Start().ok());
  std::vector<SecureDevice> ms = SecureCohort(h, 3, "p", 100);
  RunSecure(h, ms);
  for (const SecureDevice& m : ms) EXPECT_EQ(m.state, SecureHandIn::State::kAccepted);
  EXPECT_EQ(h.c->version(), 1);
  const v1::StatusResponse st = h.c->GetStatus();
  EXPECT_EQ(st.privacy().max_load(), 1);
  EXPECT_GT(st.privacy().epsilon(), 0);
  EXPECT_TRUE(std::isfinite(st.privacy().epsilon()));
}

TEST(CoordinatorSecureTest, ServeConfigRefusesCohortsThatBreakTheGuarantee) {
  auto load = [](std::vector<std::string> o) {
    o.push_back("auth.enroll_key=k");
    o.push_back("server.insecure=true");
    o.push_back("strategy.algorithm=fedbuff");
    o.push_back("secure_aggregation.enabled=true");
    return LoadServeConfig("", o);
  };
  auto small =
      load({"strategy.buffer=10", "strategy.concurrency=20", "secure_aggregation.cohort=5"});
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("smaller than the buffer"), std::string::npos);
  auto weak = load({"strategy.buffer=4", "strategy.concurrency=20", "secure_aggregation.cohort=8",
                    "secure_aggregation.neighbours=4", "secure_aggregation.threshold=2"});
  ASSERT_FALSE(weak.ok());
  EXPECT_NE(weak.status().message().find("threshold 2 must be in"), std::string::npos)
      << weak.status().message();
  auto good = load({"strategy.buffer=4", "strategy.concurrency=20"});
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(good->strategy.secure_cohort, 4);
}

}  // namespace
}  // namespace ftte::net

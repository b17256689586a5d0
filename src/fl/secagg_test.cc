#include "ftte/fl/secagg.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <set>

namespace ftte::fl::secagg {
namespace {

CohortConfig Complete(int n, int t, int64_t length = 300) {
  return {.cohort_id = 42,
          .members = n,
          .neighbours = n - 1,
          .threshold = t,
          .graph_seed = 7,
          .length = length,
          .range = 1.0};
}

std::vector<std::vector<float>> Updates(const CohortConfig& c) {
  std::vector<std::vector<float>> u(c.members, std::vector<float>(c.length));
  for (int m = 0; m < c.members; ++m) {
    for (int64_t i = 0; i < c.length; ++i) u[m][i] = static_cast<float>(std::sin(m * 7.1 + i));
  }
  return u;
}

// Hooks to drop members and tamper with messages in a run of the four rounds.
struct Script {
  std::vector<int> drop_before;  // per member: the round it no longer answers (4 = never)
  std::function<void(int, KeyShares*)> on_shares;
  std::function<void(int, std::vector<EncryptedShare>*)> on_routed;
  std::function<void(int, Unmask*)> on_unmask;
};

Script Drops(std::vector<int> drop_before) {
  Script s;
  s.drop_before = std::move(drop_before);
  return s;
}

struct CohortRun {
  Result<CohortSum> sum = FailedPrecondition("not run");
  std::vector<MaskedInput> inputs;  // what the server received in round 2
  std::vector<Status> refusals;     // member-side refusals
};

CohortRun RunCohort(const CohortConfig& c, const std::vector<std::vector<float>>& updates,
                    Script script = {}, CohortServer* server_out = nullptr) {
  if (script.drop_before.empty()) script.drop_before.assign(c.members, 4);
  auto alive = [&](int m, int round) { return script.drop_before[m] > round; };
  std::vector<Member> members;
  for (int m = 0; m < c.members; ++m) members.emplace_back(c, m, DerivedSecret(1, m));
  CohortServer local(c);
  CohortServer& server = server_out ? *server_out : local;
  CohortRun run;
  for (int m = 0; m < c.members; ++m) {
    if (alive(m, 0)) {
      EXPECT_TRUE(server.ReceiveAdvert(m, members[m].Advertise()).ok());
    }
  }
  auto adverts = server.CloseAdverts();
  if (!adverts.ok()) return run.sum = adverts.status(), run;
  for (int m = 0; m < c.members; ++m) {
    if (!alive(m, 1) || !alive(m, 0)) continue;
    auto shares = members[m].ShareKeys((*adverts)[m]);
    if (!shares.ok()) {
      run.refusals.push_back(shares.status());
      continue;
    }
    if (script.on_shares) script.on_shares(m, &*shares);
    EXPECT_TRUE(server.ReceiveShares(m, *shares).ok());
  }
  auto routed = server.CloseShares();
  if (!routed.ok()) return run.sum = routed.status(), run;
  for (int m = 0; m < c.members; ++m) {
    if (!alive(m, 2)) continue;
    if ((*routed)[m].empty()) continue;  // dropped earlier
    if (script.on_routed) script.on_routed(m, &(*routed)[m]);
    auto input = members[m].MaskInput((*routed)[m], updates[m].data());
    if (!input.ok()) {
      run.refusals.push_back(input.status());
      continue;
    }
    run.inputs.push_back(*input);
    EXPECT_TRUE(server.ReceiveMaskedInput(m, *input).ok());
  }
  auto survivors = server.CloseMaskedInputs();
  if (!survivors.ok()) return run.sum = survivors.status(), run;
  for (int m : *survivors) {
    if (!alive(m, 3)) continue;
    auto unmask = members[m].Reveal(*survivors);
    if (!unmask.ok()) {
      run.refusals.push_back(unmask.status());
      continue;
    }
    if (script.on_unmask) script.on_unmask(m, &*unmask);
    EXPECT_TRUE(server.ReceiveUnmask(m, *unmask).ok());
  }
  run.sum = server.Finish();
  return run;
}

void ExpectSumOf(const CohortConfig& c, const std::vector<std::vector<float>>& updates,
                 const CohortSum& got, const std::vector<int32_t>& contributors) {
  EXPECT_EQ(got.contributors, contributors);
  // Each value is rounded to the nearest step 1/scale: at most half a step per member.
  const double tolerance = 0.5 * contributors.size() / FixedPointScale(c.range, c.members) + 1e-6;
  ASSERT_EQ(static_cast<int64_t>(got.sum.size()), c.length);
  for (int64_t i = 0; i < c.length; ++i) {
    double exact = 0;
    for (int m : contributors) exact += updates[m][i];
    ASSERT_NEAR(got.sum[i], exact, tolerance) << "value " << i;
  }
}

std::vector<int32_t> AllBut(int n, std::set<int> out) {
  std::vector<int32_t> v;
  for (int m = 0; m < n; ++m) {
    if (!out.count(m)) v.push_back(m);
  }
  return v;
}

TEST(SecAggTest, TheUnmaskedSumEqualsThePlainSumUpToQuantisation) {
  const CohortConfig c = Complete(8, 5);
  const auto updates = Updates(c);
  CohortRun run = RunCohort(c, updates);
  ASSERT_TRUE(run.sum.ok()) << run.sum.status().ToString();
  ExpectSumOf(c, updates, *run.sum, AllBut(8, {}));
  EXPECT_TRUE(run.sum->dropped.empty());
  EXPECT_TRUE(run.sum->misbehaving.empty());
}

TEST(SecAggTest, ASparseNeighbourGraphGivesTheSameSum) {
  CohortConfig c = Complete(30, 0);
  c.neighbours = 8;
  c.threshold = 5;
  ASSERT_TRUE(ValidateCohort(c).ok());
  for (int m = 0; m < c.members; ++m) {
    const auto n = Neighbours(c, m);
    ASSERT_EQ(n.size(), 8u);  // a regular graph
    for (int v : n) {
      const auto back = Neighbours(c, v);
      EXPECT_TRUE(std::binary_search(back.begin(), back.end(), m)) << m << "-" << v;
    }
  }
  const auto updates = Updates(c);
  CohortRun run = RunCohort(c, updates);
  ASSERT_TRUE(run.sum.ok()) << run.sum.status().ToString();
  ExpectSumOf(c, updates, *run.sum, AllBut(30, {}));
}

TEST(SecAggTest, MembersDroppingAtEveryRoundLeaveTheSumOfTheOthers) {
  // A member holds no share of its own secrets: each survivor's seed is rebuilt from its
  // neighbours alone, here 5 helpers (4..9 without itself) for threshold 5.
  const CohortConfig c = Complete(10, 5);
  const auto updates = Updates(c);
  // One member leaves before each round: 0 never advertises, 1 advertises only, 2 shares keys
  // but sends no input, 3 sends its input but never helps unmask (its input counts).
  Script script = Drops(std::vector<int>{0, 1, 2, 3, 4, 4, 4, 4, 4, 4});
  CohortRun run = RunCohort(c, updates, script);
  ASSERT_TRUE(run.sum.ok()) << run.sum.status().ToString();
  ExpectSumOf(c, updates, *run.sum, AllBut(10, {0, 1, 2}));
  EXPECT_EQ(run.sum->dropped, (std::vector<int32_t>{0, 1, 2}));
}

TEST(SecAggTest, DropoutsOnASparseGraphStillUnmask) {
  CohortConfig c = Complete(24, 0);
  c.neighbours = 10;
  c.threshold = 6;
  const auto updates = Updates(c);
  Script script = Drops(std::vector<int>(24, 4));
  // Four members of one neighbourhood leave at different rounds.
  const auto n = Neighbours(c, 5);
  script.drop_before[n[0]] = 1;
  script.drop_before[n[1]] = 2;
  script.drop_before[n[2]] = 2;
  script.drop_before[n[3]] = 3;
  CohortRun run = RunCohort(c, updates, script);
  ASSERT_TRUE(run.sum.ok()) << run.sum.status().ToString();
  ExpectSumOf(c, updates, *run.sum, AllBut(24, {n[0], n[1], n[2]}));
}

TEST(SecAggTest, TooFewHelpersAbortTheCohortWithNothingReleased) {
  const CohortConfig c = Complete(10, 6);
  const auto updates = Updates(c);
  // Five survivors never answer the unmask round: five helpers < threshold 6.
  Script late = Drops(std::vector<int>{3, 3, 3, 3, 3, 4, 4, 4, 4, 4});
  CohortRun run = RunCohort(c, updates, late);
  ASSERT_FALSE(run.sum.ok());
  EXPECT_NE(run.sum.status().message().find("cannot be rebuilt"), std::string::npos)
      << run.sum.status().message();
  // Five inputs never arrive: fewer survivors than the threshold.
  Script early = Drops(std::vector<int>{2, 2, 2, 2, 2, 4, 4, 4, 4, 4});
  run = RunCohort(c, updates, early);
  ASSERT_FALSE(run.sum.ok());
  EXPECT_NE(run.sum.status().message().find("aborted at the masked inputs"), std::string::npos)
      << run.sum.status().message();
}

// A known update pattern (every value 0.5) must not be visible in what the server receives.
TEST(SecAggTest, TheServerNeverSeesAnIndividualUpdate) {
  const CohortConfig c = Complete(6, 4, 4096);
  std::vector<std::vector<float>> updates(6, std::vector<float>(c.length, 0.5f));
  CohortRun run = RunCohort(c, updates);
  ASSERT_TRUE(run.sum.ok());
  uint32_t plain;
  const float half = 0.5f;
  Quantize(&half, 1, c.range, c.members, &plain);
  for (const MaskedInput& input : run.inputs) {
    int equal = 0;
    double mean = 0;
    for (uint32_t v : input.values) {
      equal += v == plain;
      mean += v / 4294967296.0;
    }
    EXPECT_LE(equal, 2) << "member " << input.member;
    EXPECT_NEAR(mean / c.length, 0.5, 0.02) << "masked values should look uniform";
  }
  ExpectSumOf(c, updates, *run.sum, AllBut(6, {}));
}

TEST(SecAggTest, AWrongRevealedShareIsCaughtAndItsSenderNamed) {
  const CohortConfig c = Complete(9, 5);
  const auto updates = Updates(c);
  Script script;
  script.on_unmask = [](int m, Unmask* u) {
    if (m == 4) {
      for (auto& r : u->shares) r.share.y[0] ^= 12345;
    }
  };
  CohortRun run = RunCohort(c, updates, script);
  ASSERT_TRUE(run.sum.ok()) << run.sum.status().ToString();
  ExpectSumOf(c, updates, *run.sum, AllBut(9, {}));
  EXPECT_EQ(run.sum->misbehaving, (std::vector<int32_t>{4}));
}

TEST(SecAggTest, TooManyWrongSharesAbort) {
  const CohortConfig c = Complete(6, 4);
  const auto updates = Updates(c);
  Script script;
  script.on_unmask = [](int m, Unmask* u) {
    if (m < 3) {
      for (auto& r : u->shares) r.share.y[1] += 1;
    }
  };
  CohortRun run = RunCohort(c, updates, script);
  ASSERT_FALSE(run.sum.ok());
  EXPECT_NE(run.sum.status().message().find("cannot be rebuilt"), std::string::npos);
}

TEST(SecAggTest, AnAlteredShareDoesNotDecrypt) {
  const CohortConfig c = Complete(5, 3);
  Script script;
  script.on_routed = [](int m, std::vector<EncryptedShare>* s) {
    if (m == 2) (*s)[0].ciphertext[10] ^= 1;
  };
  CohortRun run = RunCohort(c, Updates(c), script);
  ASSERT_EQ(run.refusals.size(), 1u);
  EXPECT_NE(run.refusals[0].message().find("does not decrypt"), std::string::npos);
  ASSERT_TRUE(run.sum.ok());  // member 2 left; the others' sum survives
  EXPECT_EQ(run.sum->dropped, (std::vector<int32_t>{2}));
}

TEST(SecAggTest, TheServerRefusesForgedRepeatedAndMisroutedMessages) {
  const CohortConfig c = Complete(5, 3);
  CohortServer server(c);
  Member m0(c, 0, DerivedSecret(1, 0)), m1(c, 1, DerivedSecret(1, 1));
  KeyAdvert a0 = m0.Advertise();
  // Another device claiming to be member 0.
  EXPECT_NE(server.ReceiveAdvert(1, a0).message().find("as member 0"), std::string::npos);
  // A replay from another cohort.
  KeyAdvert other = a0;
  other.cohort_id = 41;
  EXPECT_NE(server.ReceiveAdvert(0, other).message().find("for cohort 41"), std::string::npos);
  // A low-order point as key.
  KeyAdvert zero = a0;
  zero.mask_key.fill(0);
  EXPECT_NE(server.ReceiveAdvert(0, zero).message().find("invalid X25519"), std::string::npos);
  ASSERT_TRUE(server.ReceiveAdvert(0, a0).ok());
  EXPECT_NE(server.ReceiveAdvert(0, a0).message().find("twice"), std::string::npos);
  // A masked input before its round.
  MaskedInput early{c.cohort_id, 1, std::vector<uint32_t>(c.length)};
  EXPECT_NE(server.ReceiveMaskedInput(1, early).message().find("early"), std::string::npos);
}

TEST(SecAggTest, ASecondOrLateMaskedInputIsRefused) {
  const CohortConfig c = Complete(5, 3);
  CohortServer server(c);
  const auto updates = Updates(c);
  std::vector<Member> members;
  for (int m = 0; m < 5; ++m) members.emplace_back(c, m, DerivedSecret(2, m));
  for (auto& m : members)
    ASSERT_TRUE(server.ReceiveAdvert(m.Advertise().member, m.Advertise()).ok());
  auto adverts = server.CloseAdverts();
  for (int m = 0; m < 5; ++m)
    ASSERT_TRUE(server.ReceiveShares(m, members[m].ShareKeys((*adverts)[m]).value()).ok());
  auto routed = server.CloseShares();
  std::vector<MaskedInput> inputs;
  for (int m = 0; m < 5; ++m)
    inputs.push_back(members[m].MaskInput((*routed)[m], updates[m].data()).value());
  for (int m = 0; m < 4; ++m) ASSERT_TRUE(server.ReceiveMaskedInput(m, inputs[m]).ok());
  EXPECT_NE(server.ReceiveMaskedInput(0, inputs[0]).message().find("second masked input"),
            std::string::npos);
  ASSERT_TRUE(server.CloseMaskedInputs().ok());
  // Member 4's input after the survivors were fixed: it is late, and its mask key will be
  // rebuilt, so accepting it now would unmask it alone.
  EXPECT_NE(server.ReceiveMaskedInput(4, inputs[4]).message().find("late"), std::string::npos);
  // Member 0 may not reveal twice, nor reveal a survivor's mask key.
  auto unmask = members[0].Reveal({0, 1, 2, 3});
  ASSERT_TRUE(unmask.ok());
  EXPECT_FALSE(members[0].Reveal({0, 1, 2, 3}).ok());
  Unmask forged = *unmask;
  for (auto& r : forged.shares) r.mask_key = !r.mask_key;
  EXPECT_NE(server.ReceiveUnmask(0, forged).message().find("revealed the"), std::string::npos);
  ASSERT_TRUE(server.ReceiveUnmask(0, *unmask).ok());
  EXPECT_NE(server.ReceiveUnmask(0, *unmask).message().find("twice"), std::string::npos);
}

TEST(SecAggTest, AMemberRefusesASurvivorListThatCouldExposeIt) {
  const CohortConfig c = Complete(5, 3);
  CohortServer server(c);
  std::vector<Member> members;
  for (int m = 0; m < 5; ++m) members.emplace_back(c, m, DerivedSecret(3, m));
  for (auto& m : members)
    ASSERT_TRUE(server.ReceiveAdvert(m.Advertise().member, m.Advertise()).ok());
  auto adverts = server.CloseAdverts();
  // Adverts a member must refuse: a repeated one, one from a non-member.
  std::vector<KeyAdvert> twice = (*adverts)[0];
  twice.push_back(twice[0]);
  EXPECT_NE(
      Member(c, 0, DerivedSecret(3, 0)).ShareKeys(twice).status().message().find("two adverts"),
      std::string::npos);
  for (int m = 0; m < 5; ++m)
    ASSERT_TRUE(server.ReceiveShares(m, members[m].ShareKeys((*adverts)[m]).value()).ok());
  auto routed = server.CloseShares();
  const std::vector<float> update(c.length, 0.25f);
  ASSERT_TRUE(members[1].MaskInput((*routed)[1], update.data()).ok());
  // Fewer survivors than the threshold, or a list without the member itself.
  EXPECT_FALSE(members[1].Reveal({1, 2}).ok());
}

TEST(SecAggTest, ParametersThatBreakTheGuaranteeAreRefusedWithTheFix) {
  CohortConfig c = Complete(10, 4);  // k = 9, t = 4 <= 9/2
  Status s = ValidateCohort(c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("set threshold to 5 or more"), std::string::npos) << s.message();
  c = Complete(10, 6);
  c.neighbours = 5;  // odd, below n - 1
  EXPECT_NE(ValidateCohort(c).message().find("must be even"), std::string::npos);
  c = Complete(1, 1);
  EXPECT_FALSE(ValidateCohort(c).ok());
  c = Complete(10, 6);
  c.range = 0;
  EXPECT_NE(ValidateCohort(c).message().find("range"), std::string::npos);
}

TEST(SecAggTest, WireBytesCountEveryMessage) {
  const CohortConfig c = Complete(6, 4, 1000);
  CohortServer server(c);
  CohortRun run = RunCohort(c, Updates(c), {}, &server);
  ASSERT_TRUE(run.sum.ok());
  const TrafficStats& t = server.traffic();
  EXPECT_EQ(t.received[0], 6 * 76);
  EXPECT_EQ(t.received[2], 6 * (16 + 4 * 1000));
  // Five encrypted share pairs from each member, 104 bytes of ciphertext each.
  EXPECT_EQ(t.received[1], 6 * (48 + 5 * (12 + 104)));
  EXPECT_EQ(t.received[3], 6 * (16 + 5 * 49));
}

}  // namespace
}  // namespace ftte::fl::secagg

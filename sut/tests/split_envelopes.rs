//! Split envelopes across real processes (`sut up`: payment, backend, two gateways):
//! an opener shares a pot to friends, a friend on the other gateway grabs a part, and
//! every bad share or grab gets its own code, is counted, and moves no money; what is
//! left at expiry is recycled; the audit then finds the grab credited once and the pot
//! settled (grabbed + recycled = pot).

mod common;

use bytes::Bytes;
use common::*;
use std::time::{Duration, Instant};
use sut_core::friends::CIRCLE;
use sut_wire::protocol::{ErrorCode, Frame};

fn share_code(f: &Option<Frame>) -> Option<u16> {
    match f {
        Some(Frame::ShareReply { code, .. }) | Some(Frame::GrabReply { code, .. }) => Some(*code),
        _ => None,
    }
}

async fn share(c: &mut Client, token: &Bytes, friends: Vec<u64>) -> Option<Frame> {
    c.req(Frame::Share {
        token: token.clone(),
        friends,
    })
    .await
}

async fn grab(c: &mut Client, share_id: u64) -> Option<Frame> {
    c.req(Frame::Grab { share_id }).await
}

/// The value of one sample line of a scrape.
fn sample(scrape: &str, prefix: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "current_thread")]
async fn shares_and_grabs_move_money_once_and_bad_ones_move_none() {
    let (dir, data, timeline) = common::show_dir(TIMELINE);
    let d = data.to_str().unwrap();
    let mut up = sut_cmd();
    up.args([
        "up",
        "--data",
        d,
        "--timeline",
        timeline.to_str().unwrap(),
        "--gateways",
        "2",
        "--base-port",
        "17600",
        "--countdown",
        "0s",
        "--split-ttl",
        "4s",
    ]);
    let up = Proc(up.spawn().unwrap());
    wait_manifest(&data);
    let gws = ["127.0.0.1:17610", "127.0.0.1:17611"];
    let auth = sut::keys::load(&data.join("auth.key")).unwrap();

    // An opener (the first user of a circle to win) and two friends in its circle.
    let mut opener = None;
    for user in (5 * CIRCLE)..(6 * CIRCLE - 2) {
        let mut c = Client::hello(gws[0], user, &auth).await;
        if let Some((token, amount)) = c.shake_for_envelope().await {
            opener = Some((c, user, token, amount));
            break;
        }
    }
    let (mut owner, user, token, amount) = opener.expect("someone in the circle wins");
    assert_eq!(
        owner
            .req(Frame::Open {
                token: token.clone()
            })
            .await,
        Some(Frame::OpenReply {
            code: 0,
            amount_cents: amount
        })
    );
    // A repeated open gets the original answer, at the gateway that recorded it and
    // at the other one alike; payment credits it once (checked by the audit below).
    let mut owner_elsewhere = Client::hello(gws[1], user, &auth).await;
    for c in [&mut owner, &mut owner_elsewhere] {
        assert_eq!(
            c.req(Frame::Open {
                token: token.clone()
            })
            .await,
            Some(Frame::OpenReply {
                code: 0,
                amount_cents: amount
            }),
            "a repeated open"
        );
    }
    let (fa, fb, stranger) = (6 * CIRCLE - 1, 6 * CIRCLE - 2, 6 * CIRCLE);

    // Bad shares, answered by the gateway alone.
    let mut forged = token.to_vec();
    forged[17] ^= 0x40;
    let cases = [
        (Bytes::from(forged), vec![fa], ErrorCode::TokenForged),
        (token.clone(), vec![user], ErrorCode::ShareToSelf),
        (token.clone(), vec![fa, stranger], ErrorCode::NotFriend),
        (token.clone(), vec![], ErrorCode::BadFriendList),
    ];
    for (t, friends, want) in cases {
        assert_eq!(
            share_code(&share(&mut owner, &t, friends).await),
            Some(want as u16),
            "{want:?}"
        );
    }
    let mut thief = Client::hello(gws[0], fa, &auth).await;
    assert_eq!(
        share_code(&share(&mut thief, &token, vec![fb]).await),
        Some(ErrorCode::TokenNotYours as u16)
    );

    // The share: retried while the open is on its way to the backend.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (share_id, parts, pot_cents, expires_in_ms) = loop {
        match share(&mut owner, &token, vec![fa, fb]).await {
            Some(Frame::ShareReply {
                code: 0,
                share_id,
                parts,
                pot_cents,
                expires_in_ms,
            }) => {
                assert!(expires_in_ms <= 4_000);
                break (share_id, parts, pot_cents, expires_in_ms);
            }
            Some(Frame::ShareReply { code, .. })
                if code == ErrorCode::NoSuchShare as u16
                    || code == ErrorCode::Unavailable as u16 =>
            {
                assert!(
                    Instant::now() < deadline,
                    "the open never reached the backend"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("share: {other:?}"),
        }
    };
    assert!((2..=5).contains(&parts));
    assert_eq!(pot_cents, (2 * amount).max(u32::from(parts)));
    assert_eq!(
        share_code(&share(&mut owner, &token, vec![fa]).await),
        Some(ErrorCode::AlreadyShared as u16)
    );
    // The same share again (a retry after a lost reply) stands.
    assert!(matches!(
        share(&mut owner_elsewhere, &token, vec![fb, fa]).await,
        Some(Frame::ShareReply { code: 0, share_id: id, parts: p, .. }) if id == share_id && p == parts
    ));

    // Grabs: the friend on the other gateway gets a part, once.
    let mut friend_a = Client::hello(gws[1], fa, &auth).await;
    let got = match grab(&mut friend_a, share_id).await {
        Some(Frame::GrabReply {
            code: 0,
            amount_cents,
        }) => amount_cents,
        other => panic!("grab: {other:?}"),
    };
    assert!(got >= 1 && got <= pot_cents - (u32::from(parts) - 1));
    // A retried grab gets its original answer, at either gateway, and no new deal.
    let mut friend_a_elsewhere = Client::hello(gws[0], fa, &auth).await;
    let told_again = Some(Frame::GrabReply {
        code: 0,
        amount_cents: got,
    });
    assert_eq!(grab(&mut friend_a, share_id).await, told_again);
    assert_eq!(grab(&mut friend_a_elsewhere, share_id).await, told_again);
    let refusals = [
        (&mut owner, share_id, ErrorCode::OwnShare),
        (&mut thief, share_id ^ 0x1, ErrorCode::NoSuchShare),
    ];
    for (c, id, want) in refusals {
        assert_eq!(
            share_code(&grab(c, id).await),
            Some(want as u16),
            "{want:?}"
        );
    }
    let mut outsider = Client::hello(gws[1], 5 * CIRCLE + 100, &auth).await;
    let outsider_code = share_code(&grab(&mut outsider, share_id).await);
    assert_eq!(outsider_code, Some(ErrorCode::NotInvited as u16));

    // Past the pot's lifetime the other friend is too late: expired, then recycled.
    tokio::time::sleep(Duration::from_millis(u64::from(expires_in_ms) + 100)).await;
    let mut friend_b = Client::hello(gws[1], fb, &auth).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match share_code(&grab(&mut friend_b, share_id).await) {
            Some(c) if c == ErrorCode::Recycled as u16 => break,
            Some(c) if c == ErrorCode::Expired as u16 => {
                assert!(Instant::now() < deadline, "the pot was never recycled");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("a grab after expiry: {other:?}"),
        }
    }
    // Even from a recycled pot, a friend who grabbed is told its part again.
    assert_eq!(grab(&mut friend_a, share_id).await, told_again);

    let m0 = scrape("127.0.0.1:18610");
    let m1 = scrape("127.0.0.1:18611");
    for (scrape, request, result) in [
        (&m0, "share", "share_to_self"),
        (&m0, "share", "not_friend"),
        (&m0, "share", "bad_friend_list"),
        (&m0, "share", "token_forged"),
        (&m0, "share", "token_not_yours"),
        (&m0, "share", "already_shared"),
        (&m0, "share", "ok"),
        (&m0, "grab", "own_share"),
        (&m1, "grab", "ok"),
        (&m1, "grab", "repeat"),
        (&m0, "grab", "repeat"),
        (&m1, "grab", "not_invited"),
        (&m1, "grab", "recycled"),
    ] {
        let line = format!("sut_gateway_splits_total{{request=\"{request}\",result=\"{result}\"}}");
        assert!(
            sample(scrape, &line).unwrap_or(0.0) >= 1.0,
            "{line} not counted"
        );
    }
    let env = scrape("127.0.0.1:18601");
    assert_eq!(
        sample(&env, "sut_envelope_grabbed_cents_total "),
        Some(f64::from(got))
    );

    drop((owner, thief, friend_a, friend_b, outsider));
    drop((owner_elsewhere, friend_a_elsewhere));
    assert!(up.stop().success());
    let by_user = dir.path().join("credits.csv");
    let out = sut_cmd()
        .args(["audit", "--json", "--data", d, "--credits-by-user"])
        .arg(&by_user)
        .output()
        .unwrap();
    // What each user was credited, as a load generator reads it: once each.
    let credits = std::fs::read_to_string(&by_user).unwrap();
    assert!(credits.starts_with("user,cents\n"), "{credits}");
    assert!(
        credits.contains(&format!("\n{user},{amount}\n")),
        "{credits}"
    );
    assert!(credits.contains(&format!("\n{fa},{got}\n")), "{credits}");
    assert_eq!(credits.lines().count(), 3, "{credits}");
    let report: sut::audit::AuditReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.passed(), "{:?}", report.violations);
    let s = &report.split;
    assert_eq!((s.pots, s.shared, s.grabs, s.grab_credits), (1, 1, 1, 1));
    assert_eq!(s.grabbed_cents, u64::from(got));
    assert_eq!(s.grab_credited_cents, u64::from(got));
    assert_eq!(s.recycled_pots, 1);
    assert_eq!(s.grabbed_cents + s.recycled_cents, u64::from(pot_cents));
    assert_eq!(s.open_cents, 0);
    assert_eq!(report.credited_cents, u64::from(amount));
}

//! Network coordinates: Serf's Vivaldi client (serf `coordinate/client.go`,
//! `coordinate.go`, `config.go`: same algorithm, same constants) and the ping-delegate
//! payload serf carries them in (`ping_delegate.go`: byte `1` then the coordinate as a
//! go-msgpack map `{Vec, Error, Adjustment, Height}`). Every ack this node sends carries its
//! coordinate; every direct probe acked with a coordinate updates ours and caches the
//! peer's, so `serf rtt` works between haserf and serf nodes in both directions. Sans-IO:
//! round-trip times come in, nothing reads a clock.

use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;

use super::wire::mp::{self, Reader};
use super::wire::WireError;

/// Serf's `coordinate.DefaultConfig()`.
#[derive(Debug, Clone, PartialEq)]
pub struct VivaldiConfig {
    /// Dimensions of the Euclidean part (8).
    pub dimensionality: usize,
    /// Largest error (1.5).
    pub error_max: f64,
    /// Error tuning constant `ce` (0.25).
    pub ce: f64,
    /// Position tuning constant `cc` (0.25).
    pub cc: f64,
    /// Samples averaged for the adjustment term (20).
    pub adjustment_window: usize,
    /// Smallest height, seconds (10 µs).
    pub height_min: f64,
    /// RTT samples per peer the median filter keeps (3).
    pub latency_filter_size: usize,
    /// Gravity towards the origin, `rho` (150).
    pub gravity_rho: f64,
}

impl Default for VivaldiConfig {
    fn default() -> Self {
        VivaldiConfig {
            dimensionality: 8,
            error_max: 1.5,
            ce: 0.25,
            cc: 0.25,
            adjustment_window: 20,
            height_min: 10.0e-6,
            latency_filter_size: 3,
            gravity_rho: 150.0,
        }
    }
}

/// A Vivaldi coordinate (serf `coordinate.Coordinate`); distances in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Coordinate {
    /// Euclidean part.
    pub vec: Vec<f64>,
    /// Confidence in the coordinate.
    pub error: f64,
    /// Distance offset learned from the observed RTTs.
    pub adjustment: f64,
    /// Access-link height.
    pub height: f64,
}

const ZERO_THRESHOLD: f64 = 1.0e-6;

impl Coordinate {
    /// Serf's `NewCoordinate`: the origin with the largest error.
    pub fn new(cfg: &VivaldiConfig) -> Coordinate {
        Coordinate {
            vec: vec![0.0; cfg.dimensionality],
            error: cfg.error_max,
            adjustment: 0.0,
            height: cfg.height_min,
        }
    }

    /// Every component finite.
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|f| f.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    /// Same dimensionality.
    pub fn is_compatible_with(&self, other: &Coordinate) -> bool {
        self.vec.len() == other.vec.len()
    }

    fn raw_distance_to(&self, other: &Coordinate) -> f64 {
        magnitude(&diff(&self.vec, &other.vec)) + self.height + other.height
    }

    /// Serf's `DistanceTo`: the estimated RTT, with both adjustments when that stays
    /// positive. The coordinates must be compatible.
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        let dist = self.raw_distance_to(other);
        let adjusted = dist + self.adjustment + other.adjustment;
        let secs = if adjusted > 0.0 { adjusted } else { dist };
        Duration::from_secs_f64(secs.max(0.0))
    }

    fn apply_force(
        &self,
        cfg: &VivaldiConfig,
        force: f64,
        other: &Coordinate,
        rng: &mut impl Rng,
    ) -> Coordinate {
        let mut ret = self.clone();
        let (unit, mag) = unit_vector_at(&self.vec, &other.vec, rng);
        for (r, u) in ret.vec.iter_mut().zip(&unit) {
            *r += u * force;
        }
        if mag > ZERO_THRESHOLD {
            ret.height = (ret.height + other.height) * force / mag + ret.height;
            ret.height = ret.height.max(cfg.height_min);
        }
        ret
    }
}

fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn magnitude(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn unit_vector_at(a: &[f64], b: &[f64], rng: &mut impl Rng) -> (Vec<f64>, f64) {
    let mut ret = diff(a, b);
    let mag = magnitude(&ret);
    if mag > ZERO_THRESHOLD {
        return (ret.iter().map(|x| x / mag).collect(), mag);
    }
    for x in ret.iter_mut() {
        *x = rng.gen::<f64>() - 0.5;
    }
    let mag = magnitude(&ret);
    if mag > ZERO_THRESHOLD {
        return (ret.iter().map(|x| x / mag).collect(), 0.0);
    }
    let mut ret = vec![0.0; ret.len()];
    if let Some(x) = ret.first_mut() {
        *x = 1.0;
    }
    (ret, 0.0)
}

/// Why an observation was not used (serf's `Update` errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinateError {
    /// Another dimensionality.
    #[error("dimensions aren't compatible")]
    Incompatible,
    /// A component is NaN or infinite.
    #[error("coordinate is invalid")]
    Invalid,
    /// The RTT is above 10 s.
    #[error("round trip time not in valid range")]
    BadRtt,
}

/// Serf's Vivaldi `Client`: this node's coordinate, updated from observed RTTs.
#[derive(Debug, Clone)]
pub struct VivaldiClient {
    cfg: VivaldiConfig,
    coord: Coordinate,
    origin: Coordinate,
    adjustment_index: usize,
    adjustment_samples: Vec<f64>,
    latency_samples: HashMap<String, Vec<f64>>,
    /// How often the coordinate was reset after becoming invalid (`coordinate_resets`).
    pub resets: u64,
}

impl VivaldiClient {
    /// A client at the origin.
    pub fn new(cfg: VivaldiConfig) -> VivaldiClient {
        VivaldiClient {
            coord: Coordinate::new(&cfg),
            origin: Coordinate::new(&cfg),
            adjustment_index: 0,
            adjustment_samples: vec![0.0; cfg.adjustment_window],
            latency_samples: HashMap::new(),
            resets: 0,
            cfg,
        }
    }

    /// This node's coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        &self.coord
    }

    /// Forgets a node's RTT samples (it left).
    pub fn forget(&mut self, node: &str) {
        self.latency_samples.remove(node);
    }

    fn latency_filter(&mut self, node: &str, rtt: f64) -> f64 {
        let n = self.cfg.latency_filter_size.max(1);
        let samples = self.latency_samples.entry(node.to_string()).or_default();
        samples.push(rtt);
        if samples.len() > n {
            samples.remove(0);
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    /// Serf's `Update`: one RTT observation of `node` at `other`.
    pub fn update(
        &mut self,
        node: &str,
        other: &Coordinate,
        rtt: Duration,
        rng: &mut impl Rng,
    ) -> Result<&Coordinate, CoordinateError> {
        if !self.coord.is_compatible_with(other) {
            return Err(CoordinateError::Incompatible);
        }
        if !other.is_valid() {
            return Err(CoordinateError::Invalid);
        }
        if rtt > Duration::from_secs(10) {
            return Err(CoordinateError::BadRtt);
        }
        let rtt = self.latency_filter(node, rtt.as_secs_f64());
        self.update_vivaldi(other, rtt, rng);
        self.update_adjustment(other, rtt);
        self.update_gravity(rng);
        if !self.coord.is_valid() {
            self.resets += 1;
            self.coord = Coordinate::new(&self.cfg);
        }
        Ok(&self.coord)
    }

    fn update_vivaldi(&mut self, other: &Coordinate, rtt: f64, rng: &mut impl Rng) {
        let dist = self.coord.distance_to(other).as_secs_f64();
        let rtt = rtt.max(ZERO_THRESHOLD);
        let wrongness = (dist - rtt).abs() / rtt;
        let total_error = (self.coord.error + other.error).max(ZERO_THRESHOLD);
        let weight = self.coord.error / total_error;
        self.coord.error =
            self.cfg.ce * weight * wrongness + self.coord.error * (1.0 - self.cfg.ce * weight);
        self.coord.error = self.coord.error.min(self.cfg.error_max);
        let force = self.cfg.cc * weight * (rtt - dist);
        self.coord = self.coord.apply_force(&self.cfg, force, other, rng);
    }

    fn update_adjustment(&mut self, other: &Coordinate, rtt: f64) {
        let window = self.cfg.adjustment_window;
        if window == 0 {
            return;
        }
        let dist = self.coord.raw_distance_to(other);
        self.adjustment_samples[self.adjustment_index] = rtt - dist;
        self.adjustment_index = (self.adjustment_index + 1) % window;
        let sum: f64 = self.adjustment_samples.iter().sum();
        self.coord.adjustment = sum / (2.0 * window as f64);
    }

    fn update_gravity(&mut self, rng: &mut impl Rng) {
        let dist = self.origin.distance_to(&self.coord).as_secs_f64();
        let force = -(dist / self.cfg.gravity_rho).powi(2);
        self.coord = self.coord.apply_force(&self.cfg, force, &self.origin, rng);
    }
}

/// Serf's `PingVersion`: the first byte of the ack payload.
pub const PING_VERSION: u8 = 1;

/// The ack payload serf's ping delegate writes: `1` + the coordinate as a msgpack map.
pub fn encode_ping_payload(c: &Coordinate) -> Vec<u8> {
    let mut o = vec![PING_VERSION];
    mp::w_map(&mut o, 4);
    mp::w_str(&mut o, "Vec");
    mp::w_array(&mut o, c.vec.len());
    for v in &c.vec {
        w_f64(&mut o, *v);
    }
    for (k, v) in [
        ("Error", c.error),
        ("Adjustment", c.adjustment),
        ("Height", c.height),
    ] {
        mp::w_str(&mut o, k);
        w_f64(&mut o, v);
    }
    o
}

fn w_f64(o: &mut Vec<u8>, v: f64) {
    o.push(0xcb);
    o.extend_from_slice(&v.to_bits().to_be_bytes());
}

/// Most dimensions accepted from a peer (serf uses 8).
const MAX_DIMENSIONS: usize = 64;

fn r_f64(r: &mut Reader<'_>, field: &'static str) -> Result<f64, WireError> {
    let m = r.peek()?;
    match m {
        0xcb => {
            let b = r.take(9)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[1..]);
            Ok(f64::from_bits(u64::from_be_bytes(a)))
        }
        0xca => {
            let b = r.take(5)?;
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[1..]);
            Ok(f32::from_bits(u32::from_be_bytes(a)) as f64)
        }
        _ => Ok(r.i64(field)? as f64),
    }
}

/// Decodes a peer's ack payload into its coordinate (`None`: no payload, as from a
/// memberlist without Serf).
pub fn decode_ping_payload(payload: &[u8]) -> Result<Option<Coordinate>, WireError> {
    let Some((&version, rest)) = payload.split_first() else {
        return Ok(None);
    };
    if version != PING_VERSION {
        return Err(WireError::BadMsgpack {
            field: "ping payload",
            reason: "unsupported ping version",
        });
    }
    let mut r = Reader::new(rest);
    let mut c = Coordinate {
        vec: Vec::new(),
        error: 0.0,
        adjustment: 0.0,
        height: 0.0,
    };
    for _ in 0..r.map_len("Coordinate")? {
        match r.key()? {
            b"Vec" => {
                let n = r.array_len("Vec")?.unwrap_or(0);
                if n > MAX_DIMENSIONS {
                    return Err(WireError::BadMsgpack {
                        field: "Vec",
                        reason: "too many dimensions",
                    });
                }
                c.vec = (0..n)
                    .map(|_| r_f64(&mut r, "Vec"))
                    .collect::<Result<_, _>>()?;
            }
            b"Error" => c.error = r_f64(&mut r, "Error")?,
            b"Adjustment" => c.adjustment = r_f64(&mut r, "Adjustment")?,
            b"Height" => c.height = r_f64(&mut r, "Height")?,
            _ => r.skip()?,
        }
    }
    Ok(Some(c))
}

/// This node's Vivaldi client plus the coordinates learned from peers (serf's
/// `coordCache`), keyed by node name.
#[derive(Debug, Clone)]
pub struct Coordinates {
    client: VivaldiClient,
    cache: HashMap<String, Coordinate>,
    payload: Vec<u8>,
}

impl Default for Coordinates {
    fn default() -> Self {
        let client = VivaldiClient::new(VivaldiConfig::default());
        let payload = encode_ping_payload(client.coordinate());
        Coordinates {
            client,
            cache: HashMap::new(),
            payload,
        }
    }
}

impl Coordinates {
    /// The payload for the acks this node sends.
    pub fn ack_payload(&self) -> &[u8] {
        &self.payload
    }

    /// This node's coordinate.
    pub fn local(&self) -> &Coordinate {
        self.client.coordinate()
    }

    /// The last coordinate `node` sent (this node's own under its own name is the caller's
    /// business).
    pub fn get(&self, node: &str) -> Option<&Coordinate> {
        self.cache.get(node)
    }

    /// Times the coordinate was reset.
    pub fn resets(&self) -> u64 {
        self.client.resets
    }

    /// A direct probe of `node` was acked after `rtt` with `payload` (serf
    /// `NotifyPingComplete`); a bad payload or observation is dropped with its reason.
    pub fn observe(
        &mut self,
        node: &str,
        payload: &[u8],
        rtt: Duration,
        rng: &mut impl Rng,
    ) -> Result<(), String> {
        let Some(c) = decode_ping_payload(payload).map_err(|e| e.to_string())? else {
            return Ok(());
        };
        self.client
            .update(node, &c, rtt, rng)
            .map_err(|e| e.to_string())?;
        self.cache.insert(node.to_string(), c);
        self.payload = encode_ping_payload(self.client.coordinate());
        Ok(())
    }

    /// Forgets `node` (reaped).
    pub fn forget(&mut self, node: &str) {
        self.cache.remove(node);
        self.client.forget(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_ping_payload_round_trips_like_serfs() {
        let c = Coordinate {
            vec: vec![0.001, -0.002, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5],
            error: 0.3,
            adjustment: -0.0001,
            height: 1e-5,
        };
        let p = encode_ping_payload(&c);
        assert_eq!(p[0], 1);
        assert_eq!(p[1], 0x84, "a 4-entry map");
        assert_eq!(decode_ping_payload(&p), Ok(Some(c)));
        assert_eq!(decode_ping_payload(&[]), Ok(None));
        assert!(decode_ping_payload(&[2, 0x80]).is_err());
    }

    /// Serf's `TestClient_Update`-like convergence: two nodes 10 ms apart end up
    /// estimating about 10 ms between them.
    #[test]
    fn two_clients_converge_on_their_rtt() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut a = VivaldiClient::new(VivaldiConfig::default());
        let mut b = VivaldiClient::new(VivaldiConfig::default());
        let rtt = Duration::from_millis(10);
        for _ in 0..200 {
            let cb = b.coordinate().clone();
            a.update("b", &cb, rtt, &mut rng).unwrap();
            let ca = a.coordinate().clone();
            b.update("a", &ca, rtt, &mut rng).unwrap();
        }
        let est = a.coordinate().distance_to(b.coordinate()).as_secs_f64();
        assert!((est - 0.010).abs() < 0.002, "estimate {est}");
    }

    #[test]
    fn bad_observations_are_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut a = VivaldiClient::new(VivaldiConfig::default());
        let mut other = Coordinate::new(&VivaldiConfig::default());
        assert_eq!(
            a.update("b", &other, Duration::from_secs(11), &mut rng)
                .err(),
            Some(CoordinateError::BadRtt)
        );
        other.error = f64::NAN;
        assert_eq!(
            a.update("b", &other, Duration::from_millis(1), &mut rng)
                .err(),
            Some(CoordinateError::Invalid)
        );
        other.vec.pop();
        assert_eq!(
            a.update("b", &other, Duration::from_millis(1), &mut rng)
                .err(),
            Some(CoordinateError::Incompatible)
        );
    }
}
